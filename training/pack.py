#!/usr/bin/python3
"""Packs BUSI train + val at one input size into a single small file for the GPU machine
(whose working tree must stay under 64 MiB): images rounded to uint8, masks as bits, gzipped.
Test images are left out: test is scored once, here, at original resolution.

  /usr/bin/python3 training/pack.py --size 256   -> training/cache/busi-256-trainval.pt.gz
"""
import argparse
import gzip
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import load_arrays  # noqa: E402

ROOT = os.path.dirname(HERE)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    cache = os.path.join(ROOT, "training", "cache")
    arrays = load_arrays(args.data, args.size, cache)
    path = os.path.join(cache, "busi-%d-trainval.pt.gz" % args.size)
    write_packed(path, args.size, {s: arrays[s] for s in ("train", "val")})
    print(path, os.path.getsize(path), "bytes")


def write_packed(path, size, splits):
    """splits: name -> (images N x H x W in 0..255, masks N x H x W 0/1, labels, files)."""
    out = {"size": size}
    for split, (images, masks, labels, files) in splits.items():
        out[split] = {
            "images": torch.from_numpy(np.clip(np.rint(images), 0, 255).astype(np.uint8)),
            "masks_bits": torch.from_numpy(np.packbits(np.asarray(masks).astype(bool), axis=-1)),
            "labels": torch.from_numpy(np.asarray(labels, dtype=np.int64)),
            "files": [str(f) for f in files],
        }
    with gzip.open(path, "wb", compresslevel=6) as f:
        torch.save(out, f)


def unpack_masks(bits, width):
    """uint8 N x H x W/8 (numpy packbits order, most significant bit first) -> uint8 N x H x W."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
    m = (bits.unsqueeze(-1) >> shifts) & 1
    return m.reshape(*bits.shape[:-1], -1)[..., :width]


if __name__ == "__main__":
    main()
