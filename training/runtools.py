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


def softmax(logits):
    """Row-wise softmax of N x C logits (numpy)."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def zoom_summary(by_zoom):
    """Class metrics per val zoom ("0.75" -> metrics) -> the row the scripts log: each zoom's metrics
    rounded, and the means of malignant AUC and F1 over the zooms (what their choices are made on)."""
    by = {z: {k: round(v, 4) for k, v in m.items()} for z, m in by_zoom.items()}
    return {"by_zoom": by,
            "mean_auc_malignant": round(float(np.mean([v["auc_malignant"] for v in by.values()])), 4),
            "mean_f1_malignant": round(float(np.mean([v["f1_malignant"] for v in by.values()])), 4)}


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
