#!/usr/bin/python3
"""Rule 30 (model/EXPERIMENTS.md): where the networks disagree (spread of P(malignant) above the cut), take
the class probabilities of the network that finds the image most suspicious instead of the average,
as a double reading recalls a woman when either reader is concerned. Scores the average and the
rule side by side from training/disagreement.py --dump files; nothing here runs a network.

  /usr/bin/python3 training/disagreement.py --subset val --dump training/runs/s33/val-members.jsonl
  /usr/bin/python3 training/max_rule.py training/runs/s33/val-members.jsonl [--cut 0.0667]
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from metrics import auc  # noqa: E402
from train import class_metrics  # noqa: E402

MALIGNANT = 2


def apply_rule(ensemble, each, cut):
    """ensemble: images x classes; each: networks x images x classes (tempered softmax each)."""
    spread = each[:, :, MALIGNANT].std(0)
    most = each[:, :, MALIGNANT].argmax(0)
    out = ensemble.copy()
    flagged = spread > cut
    out[flagged] = each[most[flagged], np.where(flagged)[0]]
    return out, flagged


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dump")
    p.add_argument("--cut", type=float, default=0.0667)
    args = p.parse_args()
    rows = [json.loads(l) for l in open(args.dump)]
    labels = np.array([r["label"] for r in rows])
    ensemble = np.array([r["ensemble"] for r in rows])
    each = np.array([r["each"] for r in rows]).transpose(1, 0, 2)
    ruled, flagged = apply_rule(ensemble, each, args.cut)
    for name, probs in (("average", ensemble), ("rule 30", ruled)):
        m = class_metrics(labels, probs)
        pred = probs.argmax(1)
        print(json.dumps({"scores": name, **{k: round(v, 4) for k, v in m.items()},
                          "malignant_called": int((pred == MALIGNANT).sum()),
                          "true_positive": int(((pred == MALIGNANT) & (labels == MALIGNANT)).sum()),
                          "false_positive": int(((pred == MALIGNANT) & (labels != MALIGNANT)).sum())}))
    changed = np.where(ensemble.argmax(1) != ruled.argmax(1))[0]
    print(json.dumps({"flagged": int(flagged.sum()), "calls_changed": [
        {"file": rows[i]["file"], "label": int(labels[i]), "from": int(ensemble[i].argmax()), "to": int(ruled[i].argmax())} for i in changed]}))


if __name__ == "__main__":
    main()
