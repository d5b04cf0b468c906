"""BUSI loading: split.csv -> arrays at the model's input size, cached on disk (not committed)."""
import csv
import hashlib
import os
import numpy as np
from PIL import Image

from preprocess import gray_from_file, resize

CLASSES = ["normal", "benign", "malignant"]


def read_split(data_dir, split_file=None):
    split_file = split_file or os.path.join(data_dir, "split.csv")
    with open(split_file, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["masks"] = [m for m in r["masks"].split("|") if m]
    return rows


def union_mask(data_dir, row):
    folder = os.path.dirname(os.path.join(data_dir, row["file"]))
    m = None
    for name in row["masks"]:
        a = np.asarray(Image.open(os.path.join(folder, name)).convert("L")) > 0
        m = a if m is None else (m | a)
    return m


def load_arrays(data_dir, size, cache_dir, split_file=None):
    """Returns dict split -> (images float32 N x H x W in 0..255, masks uint8 N x H x W, labels, files)."""
    rows = read_split(data_dir, split_file)
    key = hashlib.sha1(("%s|%d|%s" % (os.path.abspath(data_dir), size, len(rows))).encode()).hexdigest()[:10]
    path = os.path.join(cache_dir, "busi_%d_%s.npz" % (size, key))
    if os.path.exists(path):
        z = np.load(path, allow_pickle=False)
        images, masks, labels, splits, files = z["images"], z["masks"], z["labels"], z["splits"], z["files"]
    else:
        os.makedirs(cache_dir, exist_ok=True)
        images, masks = [], []
        for r in rows:
            g = gray_from_file(os.path.join(data_dir, r["file"]))
            images.append(resize(g, size, size).astype(np.float32))
            m = union_mask(data_dir, r).astype(np.float64)
            masks.append((resize(m, size, size) >= 0.5).astype(np.uint8))
        images, masks = np.stack(images), np.stack(masks)
        labels = np.array([CLASSES.index(r["class"]) for r in rows], dtype=np.int64)
        splits = np.array([r["split"] for r in rows])
        files = np.array([r["file"] for r in rows])
        np.savez(path, images=images, masks=masks, labels=labels, splits=splits, files=files)
    out = {}
    for s in ("train", "val", "test"):
        idx = np.where(splits == s)[0]
        out[s] = (images[idx], masks[idx], labels[idx], files[idx])
    return out
