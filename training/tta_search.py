#!/usr/bin/python3
"""Val-only search over inference-time choices that an ONNX graph could carry: which trained
networks to average, which input scales to add to the flip TTA, and a fallback for frames where
nothing crosses the threshold (outline the region near the frame's highest probability when the
classifier does not say "normal"). Test is never read here.

  /usr/bin/python3 training/tta_search.py name=weights.pt [name=weights.pt@128 ...] [--scales 224,256,288,320] [--zoom 0.75,1,1.25]

name=weights.pt@N names a network trained at N x N input (e.g. training/train.py --size 128; the same
suffix train.py --checkpoints takes, training/resized.py): it sees
every scale s as s * N / --size (the --size images resized bilinearly, as an in-graph resize in an
ONNX ensemble would), and its mask logits are resized back to --size, so it can be averaged with
networks trained at --size.

--zoom shows the val images as a scanner at another depth would: the picture scaled about its
centre (below 1: smaller, padded with black; above 1: larger, cropped), masks alike. With several
zooms each row holds every zoom's scores and the mean of Dice + AUC over them (how 1.3.0 was chosen).

Every network sees every scale, plain and mirrored, once; the logits are kept in memory and
averaged per combination, so the table costs one pass per (network, scale, flip).
"""
import argparse
import itertools
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from augment import zoom_images_and_masks  # noqa: E402
from data import load_arrays  # noqa: E402
from metrics import dice_iou  # noqa: E402
from resized import split_size  # noqa: E402
from train import ROOT, class_metrics, load_members  # noqa: E402


def passes(net, images, scale, flip, size):
    """Mask logits (at size x size) and class logits of one network on one view of every image."""
    ms, cs = [], []
    with torch.no_grad():
        for i in range(0, len(images), 8):
            x = images[i:i + 8]
            if scale != size:
                x = F.interpolate(x, size=(scale, scale), mode="bilinear", align_corners=False)
            if flip:
                x = torch.flip(x, dims=[3])
            m, c = net(x)
            if flip:
                m = torch.flip(m, dims=[3])
            if scale != size:
                m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
            ms.append(m[:, 0].half())
            cs.append(c)
    return torch.cat(ms).numpy(), torch.cat(cs).numpy()


def score(mask_logits, class_logits, masks, labels, threshold, fallback=None):
    """Val metrics; fallback = (share of the frame's peak probability, largest P(normal)) or None.
    normal_outlined: the share of normal images with any pixel above the threshold (at --size, with
    no P(normal) bound; the gateway's count can be lower once the export adds one)."""
    prob = 1 / (1 + np.exp(-mask_logits))
    cp = np.exp(class_logits - class_logits.max(1, keepdims=True))
    cp /= cp.sum(1, keepdims=True)
    dice, empty = [], 0
    for i in np.where(labels > 0)[0]:
        pred = prob[i] > threshold
        if not pred.any():
            empty += 1
            if fallback and cp[i, 0] < fallback[1]:
                pred = prob[i] > prob[i].max() * fallback[0]
        dice.append(dice_iou(pred, masks[i] > 0)[0])
    normal = labels == 0
    outlined = float(np.mean([(prob[i] > threshold).any() for i in np.where(normal)[0]])) if normal.any() else 0.0
    out = {"dice": float(np.mean(dice)), "empty_lesion_frames": empty, "normal_outlined": outlined,
           **class_metrics(labels, cp)}
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="name=path of each trained network")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--scales", default="224,256,288,320")
    p.add_argument("--threshold", type=float, default=0.4)
    p.add_argument("--zoom", default="1", help="scale the val images and masks about their centre first; several "
                   "(e.g. 0.75,1,1.25) score every set at each and add the mean of Dice + AUC over them")
    p.add_argument("--fallback-for", help="comma-separated names of the networks whose average the fallback is tried on (default all)")
    args = p.parse_args()
    try:
        zooms = [float(z) for z in args.zoom.split(",")]
    except ValueError:
        zooms = []
    if not zooms or min(zooms) <= 0:
        p.error("--zoom must be positive scales, e.g. 0.75 or 0.75,1,1.25")
    torch.set_num_threads(2)
    images, masks, labels, _ = load_arrays(args.data, args.size, os.path.join(ROOT, "training", "cache"))["val"]
    named, native = {}, {}
    for w in args.weights:
        name, _, spec = w.partition("=")
        if not name or not spec:
            p.error("a network is name=weights.pt or name=weights.pt@size, not %r" % w)
        named[name], n = split_size(spec)
        native[name] = n or args.size
    scales = [int(s) for s in args.scales.split(",")]
    if args.size not in scales or any(s % 16 for s in scales):
        p.error("--scales must include --size, and every scale must be a multiple of 16")
    if any(s * n % (16 * args.size) for s in scales for n in native.values()):
        p.error("every scale x a network's @size / --size must be a multiple of 16")
    shown = {}  # zoom -> (network input, masks)
    for z in zooms:
        im, mk = zoom_images_and_masks(images, masks, z)
        shown[z] = (torch.from_numpy((im / 255.0)[:, None].astype(np.float32)), mk)
    views = {}
    for name, path in named.items():
        net = load_members([path])
        for z, s, f in itertools.product(zooms, scales, (0, 1)):
            views[z, name, s, f] = passes(net, shown[z][0], s * native[name] // args.size, f, args.size)

    def labels_of(members):
        return [m if native[m] == args.size else "%s@%d" % (m, native[m]) for m in members]

    def average(z, members, use):
        keys = [(z, m, s, f) for m in members for s in use for f in (0, 1)]
        return (sum(views[k][0].astype(np.float32) for k in keys) / len(keys),
                sum(views[k][1] for k in keys) / len(keys))

    others = [s for s in scales if s != args.size]
    scale_sets = [[args.size] + list(c) for k in range(len(others) + 1) for c in itertools.combinations(others, k)]
    member_sets = [list(c) for k in range(1, len(named) + 1) for c in itertools.combinations(named, k)]
    for members, use in itertools.product(member_sets, scale_sets):
        by_zoom = {}
        for z in zooms:
            ml, cl = average(z, members, use)
            mk = shown[z][1]
            by_zoom["%g" % z] = {**score(ml, cl, mk, labels, args.threshold),
                                 "dice_by_threshold": {t: score(ml, cl, mk, labels, t)["dice"] for t in (0.3, 0.4, 0.5)}}
        row = {"networks": labels_of(members), "scales": sorted(use)}
        if len(zooms) == 1:
            row.update(by_zoom["%g" % zooms[0]])
        else:
            row["by_zoom"] = by_zoom
            row["mean_dice_plus_auc"] = round(float(np.mean([r["dice"] + r["auc_malignant"] for r in by_zoom.values()])), 4)
        print(json.dumps(row), flush=True)
    chosen = args.fallback_for.split(",") if args.fallback_for else list(named)
    for z in zooms:
        ml, cl = average(z, chosen, [args.size])
        for share, normal in itertools.product((0.3, 0.5, 0.7), (0.5, 0.8, 1.01)):
            print(json.dumps({"networks": labels_of(chosen), "scales": [args.size], "zoom": z, "fallback_share_of_peak": share,
                              "fallback_if_p_normal_below": normal,
                              **score(ml, cl, shown[z][1], labels, args.threshold, (share, normal))}), flush=True)


if __name__ == "__main__":
    main()
