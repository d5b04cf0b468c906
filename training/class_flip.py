#!/usr/bin/python3
"""Val-only check for rule 17 (model/EXPERIMENTS.md): does averaging the class logits over the image and its
mirror, with the mask from the image alone, lift the malignant AUC of an exported ensemble?

  /usr/bin/python3 training/class_flip.py --fusion training/runs/shipped/fusion.json \\
      training/runs/shipped/member0.pt training/runs/shipped/member1.pt@128 training/runs/shipped/member2.pt@128

The networks are averaged as in the ONNX graph (train.py's Ensemble); the lesion-descriptor
regression (--fusion, as training/from_onnx.py or the export writes it) is added at its own weight,
on the outline of the plain view (the mirror moves no outline). Prints one JSON line per zoom with
the class metrics of the plain view and of the class-only mirror, and a verdict by rule 17's stage A.
Test is never read here.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from augment import zoom_images_and_masks  # noqa: E402
from data import load_arrays  # noqa: E402
from descriptors import DescriptorFusion  # noqa: E402
from train import ROOT, class_metrics, load_members  # noqa: E402

MIN_GAIN = 0.005  # rule 17: full-size AUC gain needed


@torch.no_grad()
def class_views(fusion, x, batch=16):
    """Softmax probabilities of the plain view and of the class-only mirror, both with the
    descriptor log-odds (fusion, around the ensemble fusion.net) of the plain view's outline."""
    plain, mirrored = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        ml, c1 = fusion.net(xb)
        _, c2 = fusion.net(torch.flip(xb, dims=[3]))
        shift = fusion.weight * fusion.log_odds(xb, ml)[:, None] * fusion.direction
        plain.append(torch.softmax(c1 + shift, 1))
        mirrored.append(torch.softmax((c1 + c2) / 2 + shift, 1))
    return torch.cat(plain).numpy(), torch.cat(mirrored).numpy()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="the ensemble's networks (weights.pt or weights.pt@128)")
    p.add_argument("--fusion", required=True, help="the descriptor regression's fusion.json")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--zoom", default="0.5,0.75,1,1.25")
    args = p.parse_args()
    zooms = [float(z) for z in args.zoom.split(",")]
    if 1.0 not in zooms:
        p.error("--zoom must include 1")
    torch.set_num_threads(2)
    net = DescriptorFusion(load_members(args.weights), json.load(open(args.fusion))).eval()
    images, masks, labels, _ = load_arrays(args.data, 256, os.path.join(ROOT, "training", "cache"))["val"]
    rows = {}
    for z in zooms:
        im, _ = zoom_images_and_masks(images, masks, z)
        x = torch.from_numpy((im / 255.0)[:, None].astype(np.float32))
        plain, mirrored = class_views(net, x)
        rows[z] = {"zoom": z, "plain": class_metrics(labels, plain), "class_mirror": class_metrics(labels, mirrored)}
        print(json.dumps(rows[z]), flush=True)
    gain = {z: r["class_mirror"]["auc_malignant"] - r["plain"]["auc_malignant"] for z, r in rows.items()}
    met = gain[1.0] >= MIN_GAIN and all(g >= 0 for g in gain.values())
    print(json.dumps({"auc_gain_by_zoom": {"%g" % z: round(g, 4) for z, g in gain.items()},
                      "stage_a": "met" if met else "not met"}))


if __name__ == "__main__":
    main()
