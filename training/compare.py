#!/usr/bin/python3
"""Val metrics of trained weights, alone and averaged as ensembles, to choose what to export
(val only: test is scored once, by the export).

  /usr/bin/python3 training/compare.py a.pt b.pt c.pt [--size 256] [--ensembles all|none]
"""
import argparse
import itertools
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import load_arrays  # noqa: E402
from metrics import dice_iou  # noqa: E402
from train import FlipTTA, ROOT, evaluate_small, load_members  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights", nargs="+")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--ensembles", choices=["all", "none"], default="all")
    p.add_argument("--tta", action="store_true")
    args = p.parse_args()
    val = load_arrays(args.data, args.size, os.path.join(ROOT, "training", "cache"))["val"][:3]
    spec = {"size": [args.size, args.size], "scale": 1 / 255, "mean": 0.0, "std": 1.0}
    sets = [[w] for w in args.weights]
    if args.ensembles == "all":
        sets += [list(c) for k in range(2, len(args.weights) + 1) for c in itertools.combinations(args.weights, k)]
    for s in sets:
        net = load_members(s)
        for tta in ([False, True] if args.tta else [False]):
            m, prob, _ = evaluate_small(FlipTTA(net) if tta else net, *val, spec)
            lesion = np.where(val[2] > 0)[0]
            sweep = {t: float(np.mean([dice_iou(prob[i] > t, val[1][i] > 0)[0] for i in lesion]))
                     for t in (0.3, 0.4, 0.5, 0.6)}
            print(json.dumps({"weights": [os.path.basename(w) for w in s], "tta": tta,
                              **{k: round(v, 4) for k, v in m.items()},
                              "dice_by_threshold": {t: round(v, 4) for t, v in sweep.items()}}), flush=True)


if __name__ == "__main__":
    main()
