#!/usr/bin/python3
"""Finds BUSI test images that have a near-duplicate in train or val (perceptual hash), and
writes a split file without them, so the test score can be reported with and without them.

  /usr/bin/python3 training/dedup.py [--data ../shared/datasets/busi] [--max-distance 6]

pHash: 32x32 grayscale (PIL bilinear), 2-D DCT, top-left 8x8 coefficients (minus DC) compared
with their median -> 63-bit hash; near-duplicates differ in at most --max-distance bits.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def dct_matrix(n):
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


D = dct_matrix(32)


def phash(path):
    a = np.asarray(Image.open(path).convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float64)
    c = (D @ a @ D.T)[:8, :8].flatten()[1:]
    return c > np.median(c)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--max-distance", type=int, default=6)
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "split-test-dedup.csv"))
    a = p.parse_args()
    with open(os.path.join(a.data, "split.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    hashes = np.stack([phash(os.path.join(a.data, r["file"])) for r in rows])
    split = np.array([r["split"] for r in rows])
    test_idx = np.where(split == "test")[0]
    other_idx = np.where(split != "test")[0]
    dist = (hashes[test_idx][:, None, :] != hashes[other_idx][None, :, :]).sum(-1)
    near = dist.min(1) <= a.max_distance
    pairs = []
    for t, is_near in zip(test_idx, near):
        if is_near:
            j = other_idx[np.argmin((hashes[t] != hashes[other_idx]).sum(-1))]
            pairs.append({"test": rows[t]["file"], "match": rows[j]["file"], "match_split": rows[j]["split"],
                          "bits": int((hashes[t] != hashes[j]).sum()), "cross_class": rows[t]["class"] != rows[j]["class"]})
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    dup = {p_["test"] for p_ in pairs}
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "class", "split", "masks"])
        w.writeheader()
        for r in rows:
            if r["split"] == "test" and r["file"] not in dup:
                w.writerow(r)
    print(json.dumps({"test_images": int(len(test_idx)), "near_duplicates": len(pairs), "max_distance": a.max_distance,
                      "cross_class": sum(p_["cross_class"] for p_ in pairs), "split_without": a.out, "pairs": pairs}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
