#!/usr/bin/python3
"""Val-only search for rule 6 (model/EXPERIMENTS.md): the base ensemble, plus a zoom view of 128² networks
fed the 256² input, used on frames where the base outlines less than a share A of the frame
(training/zoom_gate.py). Test is never read here.

  /usr/bin/python3 training/zoom_search.py --base m1=training/runs/shipped/member1.pt \\
      d=training/runs/pi128-s2/best.pt@128 n=training/runs/pi128-npft/best.pt@128 \\
      --zoom-view d=training/runs/pi128-s2/best.pt@256 n=training/runs/pi128-npft/best.pt@256

Every candidate is scored at each --zoom (val images and masks scaled about their centre) at
--size, threshold --threshold, no flip TTA, and with the P(normal) bound --normal-bound applied to
every frame as the gateway does (from the base's class logits, which the gate leaves alone).
One JSON line per candidate, the base first.
"""
import argparse
import itertools
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from augment import zoom_images_and_masks  # noqa: E402
from data import load_arrays  # noqa: E402
from metrics import dice_iou  # noqa: E402
from normal_bound import suppressed  # noqa: E402
from train import ROOT, CLASSES, class_metrics, load_members, predict  # noqa: E402
from zoom_gate import gate_logits  # noqa: E402

AREAS = (0.005, 0.01, 0.02, 0.04, 0.08, 2.0)  # 2.0: every frame ("always")
WEIGHTS = (0.5, 1.0)


def named(specs):
    out = {}
    for s in specs:
        name, _, path = s.partition("=")
        if not name or not path:
            raise SystemExit("a network is name=weights.pt[@size], not %r" % s)
        out[name] = path
    return out


def score(mask_logits, class_logits, masks, labels, threshold, bound):
    prob = torch.sigmoid(mask_logits)[:, 0].numpy()
    cp = torch.softmax(class_logits, 1).numpy()
    drop = np.array([suppressed(p, bound) for p in cp[:, CLASSES.index("normal")]])
    pred = (prob > threshold) & ~drop[:, None, None]
    dice = [dice_iou(pred[i], masks[i] > 0)[0] for i in np.where(labels > 0)[0]]
    normal = np.where(labels == 0)[0]
    return {"dice": round(float(np.mean(dice)), 4),
            "empty_lesion_frames": int(sum(not pred[i].any() for i in np.where(labels > 0)[0])),
            "normal_outlined": round(float(np.mean([pred[i].any() for i in normal])), 4) if len(normal) else 0.0,
            **{k: round(v, 4) for k, v in class_metrics(labels, cp).items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", nargs="+", required=True, help="name=weights.pt[@size] of the base ensemble's networks")
    p.add_argument("--zoom-view", nargs="+", required=True, help="name=weights.pt@size of the zoom view's candidates")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--normal-bound", type=float, default=0.5)
    p.add_argument("--zoom", default="0.5,0.75,1,1.25")
    args = p.parse_args()
    zooms = [float(z) for z in args.zoom.split(",")]
    torch.set_num_threads(2)
    images, masks, labels, _ = load_arrays(args.data, args.size, os.path.join(ROOT, "training", "cache"))["val"]
    base = load_members(list(named(args.base).values()))
    views = named(args.zoom_view)
    nets = {k: load_members([v]) for k, v in views.items()}
    shown, base_out, zoom_out = {}, {}, {}
    with torch.no_grad():
        for z in zooms:
            im, mk = zoom_images_and_masks(images, masks, z)
            x = torch.from_numpy((im / 255.0)[:, None].astype(np.float32))
            shown[z] = mk
            base_out[z] = predict(base, x)
            for k, net in nets.items():
                zoom_out[z, k] = predict(net, x)[0]
    sets = [list(c) for k in range(1, len(views) + 1) for c in itertools.combinations(views, k)]

    def row(name, fn):
        by = {"%g" % z: score(fn(z), base_out[z][1], shown[z], labels, args.threshold, args.normal_bound) for z in zooms}
        return {"candidate": name, "by_zoom": by}

    print(json.dumps(row("base", lambda z: base_out[z][0])), flush=True)
    for members, area, weight in itertools.product(sets, AREAS, WEIGHTS):
        def gated(z, members=members, area=area, weight=weight):
            zoom = sum(zoom_out[z, k] for k in members) / len(members)
            return gate_logits(base_out[z][0], zoom, args.threshold, area, weight)
        name = {"zoom_view": members, "area_below": "always" if area > 1 else area, "weight": weight}
        print(json.dumps(row(name, gated)), flush=True)


if __name__ == "__main__":
    main()
