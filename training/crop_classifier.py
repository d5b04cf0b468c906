#!/usr/bin/python3
"""Feasibility check for a second classifier that sees only the lesion (rules 16 and 28 in model/EXPERIMENTS.md;
val only, test is never read, nothing is exported):

  /usr/bin/python3 training/crop_classifier.py --details <val details from sonogate evaluate> \
      training/runs/shipped/member0.pt training/runs/shipped/member1.pt@128 training/runs/shipped/member2.pt@128
  (rule 28: --encoder mobilenetv2 --picture-size 256 --crop 128 --seed 28, and 1.8.0's four networks,
   the above and training/runs/gpu24/p3.pt)

A small CNN (or, with --encoder mobilenetv2, Keras' ImageNet MobileNetV2) is trained for a fixed number of epochs (no checkpoint choice) on crops of the train
lesion images, benign against malignant: the ground-truth mask's bounding box, squared, with a
margin, cut from the picture at --picture-size and resized to --crop, with flips, box jitter,
rotation, gain, gamma and speckle. On the val lesion images it is scored on crops from the given
networks' averaged outline (threshold --threshold, no flip; the ground-truth box where the outline
is empty) and on the ground-truth boxes, then fused with the shipped model's P(malignant) from
`sonogate evaluate --details` by adding the two log-odds with equal weight. Prints JSON lines.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from data import load_arrays  # noqa: E402
from metrics import auc  # noqa: E402
from mobilenet import MobileNetV2Encoder, load_imagenet  # noqa: E402
from train import ROOT, load_members  # noqa: E402


def box_of(mask, margin):
    """Square box (cy, cx, half side) in relative units (0..1) around a mask's pixels, or None."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min() / h, (ys.max() + 1) / h, xs.min() / w, (xs.max() + 1) / w
    half = max(y1 - y0, x1 - x0) / 2 * (1 + margin)
    return (y0 + y1) / 2, (x0 + x1) / 2, max(half, 0.05)


def crops(pictures, boxes, size, g=None, jitter=0.0, rotate=0.0):
    """Crops of boxes from pictures (N x 1 x H x W) by an affine grid (bilinear, zeros outside);
    with g, each box is jittered in centre and size and rotated."""
    n = len(boxes)
    b = torch.tensor(boxes, dtype=torch.float32)
    cy, cx, half = b[:, 0], b[:, 1], b[:, 2]
    angle = torch.zeros(n)
    if g is not None:
        cy = cy + (torch.rand(n, generator=g) * 2 - 1) * jitter * half
        cx = cx + (torch.rand(n, generator=g) * 2 - 1) * jitter * half
        half = half * torch.exp((torch.rand(n, generator=g) * 2 - 1) * jitter)
        angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(rotate)
    s = half * 2  # box side in units of the picture (grid coordinates span 2)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = s * torch.cos(angle), -s * torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = s * torch.sin(angle), s * torch.cos(angle)
    theta[:, 0, 2], theta[:, 1, 2] = cx * 2 - 1, cy * 2 - 1
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    return F.grid_sample(pictures, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def photometric(x, g):
    """Gain, gamma and multiplicative speckle on 0..1 crops (standardise() comes after)."""
    n = len(x)
    gain = torch.exp((torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * math.log(1.4))
    gamma = torch.exp((torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * math.log(1.5))
    x = (x * gain).clamp(0, 1) ** gamma
    sigma = torch.rand(n, 1, 1, 1, generator=g) * 0.25
    x = x * (1 + sigma * torch.randn(x.shape, generator=g)).clamp(min=0)
    return x


def standardise(x):
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    sd = x.std(dim=(1, 2, 3), keepdim=True).clamp(min=1e-3)
    return (x - mu) / sd


class CropNet(nn.Module):
    def __init__(self, widths=(24, 48, 96, 192)):
        super().__init__()
        layers, c = [], 1
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(c, 1))

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))[:, 0]


class MobileCropNet(nn.Module):
    """MobileNetV2 (training/mobilenet.py; grey crop fed as R = G = B, halved after standardise() as in
    MobileAttentionUNet), global average pooling of its 1280 features, dropout and one linear logit."""

    def __init__(self):
        super().__init__()
        self.encoder = MobileNetV2Encoder(1)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(1280, 1))

    def forward(self, x):
        _, _, last = self.encoder(0.5 * x)
        return self.head(last.mean(dim=(2, 3)))[:, 0]


def predicted_masks(paths, images256, threshold):
    net = load_members(paths)
    out = []
    with torch.no_grad():
        for i in range(0, len(images256), 8):
            m, _ = net(torch.from_numpy((images256[i:i + 8] / 255.0)[:, None].astype(np.float32)))
            out.append((torch.sigmoid(m[:, 0]) > threshold).numpy())
    return np.concatenate(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", help="networks whose averaged outline gives the val boxes (train.py --checkpoints form)")
    p.add_argument("--details", required=True, help="sonogate evaluate --subset val --details FILE (the shipped P(malignant))")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "training", "cache"))
    p.add_argument("--picture-size", type=int, default=512)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--margin", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=22)
    p.add_argument("--threshold", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--encoder", choices=("small", "mobilenetv2"), default="small",
                   help="small: rule 16's CNN from random weights; mobilenetv2: Keras' ImageNet MobileNetV2 (rule 28)")
    p.add_argument("--encoder-lr-scale", type=float, default=0.3, help="the pretrained encoder's learning rate, relative to the head's")
    p.add_argument("--pretrained", default=os.path.join(ROOT, "training", "cache", "mobilenet_v2_imagenet"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    big = load_arrays(args.data, args.picture_size, args.cache_dir)
    small = load_arrays(args.data, 256, args.cache_dir)

    def lesion_set(split):
        images, masks, labels, files = big[split]
        keep = labels > 0
        return (torch.from_numpy((images[keep] / 255.0)[:, None].astype(np.float32)), masks[keep],
                (labels[keep] == 2).astype(np.float32), files[keep], keep)

    xt, mt, yt, _, _ = lesion_set("train")
    bt = [box_of(m, args.margin) for m in mt]
    if args.encoder == "mobilenetv2":
        net = MobileCropNet()
        print(json.dumps({"imagenet_tensors": load_imagenet(net.encoder, args.pretrained)}), flush=True)
        groups = [{"params": net.encoder.parameters(), "lr": args.lr * args.encoder_lr_scale},
                  {"params": net.head.parameters(), "lr": args.lr}]
    else:
        net = CropNet()
        groups = [{"params": net.parameters(), "lr": args.lr}]
    print(json.dumps({"train_lesion_images": len(yt), "malignant": int(yt.sum()),
                      "parameters": sum(q.numel() for q in net.parameters())}), flush=True)
    g = torch.Generator().manual_seed(args.seed)
    pos = float(yt.mean())
    loss_weight = torch.tensor([0.5 / (1 - pos), 0.5 / pos])  # class-balanced
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * math.ceil(len(yt) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=0.05)
    y_all = torch.from_numpy(yt)
    started = time.time()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(yt), generator=g)
        total = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            x = crops(xt[idx], [bt[j] for j in idx.tolist()], args.crop, g, jitter=0.15, rotate=15)
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], torch.flip(x, dims=[3]), x)
            x = standardise(photometric(x, g))
            y = y_all[idx]
            logit = net(x)
            w = loss_weight[y.long()]
            loss = (F.binary_cross_entropy_with_logits(logit, y, reduction="none") * w).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        print(json.dumps({"epoch": epoch + 1, "loss": round(total / len(yt), 4), "seconds": round(time.time() - started)}), flush=True)

    # val: boxes from the networks' outline (ground truth where it is empty) and from the ground truth
    xv, mv, yv, fv, keep = lesion_set("val")
    pred = predicted_masks(args.members, small["val"][0][keep], args.threshold)
    boxes_gt = [box_of(m, args.margin) for m in mv]
    boxes_pred = [box_of(pm, args.margin) for pm in pred]
    fallback = sum(b is None for b in boxes_pred)
    boxes_pred = [b or gt for b, gt in zip(boxes_pred, boxes_gt)]
    net.eval()

    def logits(boxes):
        with torch.no_grad():
            x = standardise(crops(xv, boxes, args.crop))
            return ((net(x) + net(torch.flip(x, dims=[3]))) / 2).numpy()

    rows = [json.loads(line) for line in open(args.details) if line.strip()]  # one JSON object per image
    shipped = {r["file"]: r["probabilities"]["malignant"] for r in rows}
    p_ship = np.clip(np.array([shipped[str(f)] for f in fv]), 1e-6, 1 - 1e-6)
    ship_logit = np.log(p_ship / (1 - p_ship))
    out = {"val_lesion_images": len(yv), "malignant": int(yv.sum()), "empty_outline_fallbacks": fallback,
           "auc_shipped": auc(yv > 0, p_ship)}
    for name, boxes in (("predicted_boxes", boxes_pred), ("ground_truth_boxes", boxes_gt)):
        c = logits(boxes)
        out["auc_crop_" + name] = auc(yv > 0, c)
        out["auc_fused_" + name] = auc(yv > 0, c + ship_logit)
        out["accuracy_crop_" + name] = float(((c > 0) == (yv > 0)).mean())
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}), flush=True)


if __name__ == "__main__":
    main()
