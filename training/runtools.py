"""Plumbing shared by the analysis scripts that score trained networks (refit_head.py,
descriptor_head.py): the run's start, and a cache of computed arrays keyed by what they came from."""
import os

import numpy as np
import torch

from train import Log


def start_run(args):
    """Threads and seed from args, args.out created; returns the run's Log (<out>/log.txt)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    return Log(os.path.join(args.out, "log.txt"))


def scales(text):
    """'0.75,1,1.25' -> [0.75, 1.0, 1.25]"""
    return [float(v) for v in text.split(",")]


def cached(path, key, compute, log):
    """compute() -> dict of arrays, kept in the .npz file at path and reused only while key (a string
    naming the networks and settings they came from) is the same."""
    found = dict(np.load(path)) if os.path.exists(path) else {}
    if str(found.get("key", "")) == key:
        log("reused", path)
        return found
    arrays = compute()
    np.savez(path, key=np.array(key), **arrays)
    return arrays
