#!/usr/bin/python3
"""Rule 29 (model/EXPERIMENTS.md, "What we tried after 1.8.0"): does the disagreement between the shipped
model's networks mark its wrong malignant calls, above all the confident ones?

  /usr/bin/python3 training/from_onnx.py --out training/runs/shipped
  /usr/bin/python3 training/disagreement.py [--subset val|test] [--model model/model.json]

Each network's class logits are divided by model.json's class temperature, as the graph divides
their average, and put through a softmax; spread = the standard deviation of P(malignant) over the
networks. A call is wrong when "malignant" (the averaged logits' argmax) and the truth disagree.
Prints the ensemble's AUC (a check against the gateway's), the AUROC of spread for the wrong calls
among all images and among the confident ones (P(malignant) >= 0.8 or <= 0.2), and one line per
wrong call; --dump writes every image's networks' probabilities for rule 30 (training/max_rule.py).
The descriptor regression is not rebuilt: 1.8.0's weight for it is 0.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import load_arrays  # noqa: E402
from metrics import auc  # noqa: E402
from train import ROOT, load_members, predict  # noqa: E402


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "model", "model.json"))
    p.add_argument("--members", default=os.path.join(ROOT, "training", "runs", "shipped"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--subset", default="val", choices=["val", "test"])
    p.add_argument("--dump", help="also write each image's label and each network's tempered class probabilities (JSON lines)")
    args = p.parse_args()
    spec = json.load(open(args.model))
    if spec["training"].get("descriptor_head", {}).get("weight", 0):
        sys.exit("this model's class logits carry the descriptor regression, which this check does not rebuild")
    t = spec["training"].get("class_temperature", 1.0)
    torch.set_num_threads(2)
    images, _, labels, files = load_arrays(args.data, spec["input"]["size"][0], os.path.join(ROOT, "training", "cache"))[args.subset]
    x = torch.from_numpy((images * spec["input"]["scale"])[:, None].astype(np.float32))
    logits = []
    for k, w in enumerate(spec["training"]["ensemble"]):
        path = os.path.join(args.members, "member%d.pt%s" % (k, "@" + w.split("@")[1] if "@" in w else ""))
        _, cl = predict(load_members([path]), x)
        logits.append(cl.float().numpy())
    logits = np.stack(logits)  # networks x images x 3
    pm_each = np.stack([softmax(z / t)[:, 2] for z in logits])
    probs = softmax(logits.mean(0) / t)
    pm = probs[:, 2]
    spread = pm_each.std(0)
    truth = labels == 2
    called = probs.argmax(1) == 2
    wrong = called != truth
    confident = (pm >= 0.8) | (pm <= 0.2)
    out = {
        "subset": args.subset, "n": int(len(labels)), "temperature": t,
        "ensemble_auc_malignant": round(auc(truth, pm), 4),
        "wrong_calls": int(wrong.sum()),
        "auroc_spread_for_wrong": round(auc(wrong, spread), 4) if 0 < wrong.sum() < len(wrong) else None,
        "confident": int(confident.sum()), "wrong_confident": int((wrong & confident).sum()),
        "auroc_spread_for_wrong_confident": round(auc(wrong[confident], spread[confident]), 4)
        if 0 < (wrong & confident).sum() < confident.sum() else None,
        "spread_median_right": round(float(np.median(spread[~wrong])), 4),
        "spread_median_wrong": round(float(np.median(spread[wrong])), 4) if wrong.any() else None,
    }
    print(json.dumps(out))
    for i in np.where(wrong)[0]:
        print(json.dumps({"file": str(files[i]), "label": ["normal", "benign", "malignant"][labels[i]],
                          "p_malignant": round(float(pm[i]), 3), "spread": round(float(spread[i]), 3),
                          "each": [round(float(v), 3) for v in pm_each[:, i]]}))
    if args.dump:
        with open(args.dump, "w") as f:
            for i in range(len(labels)):
                f.write(json.dumps({"file": str(files[i]), "label": int(labels[i]), "ensemble": probs[i].tolist(),
                                    "each": [softmax(z[i:i + 1] / t)[0].tolist() for z in logits]}) + "\n")
    q = np.quantile(spread, [0.5, 0.75, 0.9])
    print(json.dumps({"spread_quantiles_50_75_90": [round(float(v), 4) for v in q],
                      "wrong_rate_above_75th": round(float(wrong[spread > q[1]].mean()), 3),
                      "wrong_rate_at_or_below_75th": round(float(wrong[spread <= q[1]].mean()), 3)}))


if __name__ == "__main__":
    main()
