#!/usr/bin/python3
"""Fit a malignant-vs-benign logistic regression on lesion descriptors (training/descriptors.py) and
choose how much of it to add to the exported networks' class logits (issue 3: the class head
overfits its 768 pooled features; a dozen descriptors of the network's own outline cannot).

  /usr/bin/python3 training/descriptor_head.py training/runs/cpu-zoom-ft3/best.pt training/runs/cpu-zoom-b16long/best.pt \\
      --out training/runs/descriptor-head

The networks are averaged with horizontal-flip TTA, as the exported graph does. Descriptors come from
that mask at --threshold. The regression is fitted on train lesion images (as they are, and
--copies augmented copies with scale --zoom-range), class-balanced; its L2 strength is chosen by
5-fold cross-validation on train (an image and its copies stay in one fold). The weight w is chosen
on val by the mean malignant AUC over --val-zooms. Test is never read.

Writes <out>/features.npz (a cache), <out>/search.json and <out>/fusion.json (the parameters
train.py --export-only --descriptor-head reads).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from augment import augment, zoom_images_and_masks  # noqa: E402
from data import load_arrays  # noqa: E402
from descriptors import NAMES, lesion_descriptors  # noqa: E402
from metrics import auc  # noqa: E402
from runtools import cached, scales, softmax, start_run, zoom_summary  # noqa: E402
from train import ROOT, FlipTTA, class_metrics, load_members  # noqa: E402

MALIGNANT = 2
DIRECTION = np.array([0.0, -0.5, 0.5])
LAMBDAS = (0.0001, 0.001, 0.01, 0.1, 1.0)
WS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


@torch.no_grad()
def outputs(net, x, threshold, batch=16):
    """Descriptors, lesion gate and class logits of the (flip-averaged) networks on images x."""
    fs, gs, cs = [], [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        ml, cl = net(xb)
        f, g = lesion_descriptors(xb, torch.sigmoid(ml), threshold)
        fs.append(f)
        gs.append(g)
        cs.append(cl)
    return torch.cat(fs).numpy(), torch.cat(gs).numpy(), torch.cat(cs).numpy()


def compute(net, data, threshold, copies, zoom_range, val_zooms, seed, log):
    xi, mi, yi, _ = data["train"]
    x = torch.from_numpy(xi[:, None] / 255.0).float()
    m = torch.from_numpy(mi[:, None]).float()
    g = torch.Generator().manual_seed(seed)
    out = {"train_y": np.tile(yi, copies + 1), "train_image": np.tile(np.arange(len(yi)), copies + 1),
           "val_y": data["val"][2]}
    parts = []
    for k in range(copies + 1):  # copy 0: the train images as they are
        t = time.time()
        xa = x if k == 0 else torch.cat([augment(x[i:i + 32], m[i:i + 32], g, zoom_range)[0] for i in range(0, len(x), 32)])
        parts.append(outputs(net, xa, threshold))
        log("train copy %d/%d: %.0f s" % (k, copies, time.time() - t))
    for j, key in enumerate(("train_f", "train_gate", "train_logits")):
        out[key] = np.concatenate([p[j] for p in parts])
    for z in val_zooms:
        im, _ = zoom_images_and_masks(data["val"][0], data["val"][1], z)
        xv = torch.from_numpy((im / 255.0)[:, None].astype(np.float32))
        out["val_f_%g" % z], out["val_gate_%g" % z], out["val_logits_%g" % z] = outputs(net, xv, threshold)
        log("val at zoom %g done" % z)
    return out


def fit_logistic(z, t, lam, steps=300):
    """Class-balanced logistic regression (t: 1 = malignant) with L2 penalty lam * |coef|^2; z standardised."""
    zt = torch.from_numpy(z).double()
    tt = torch.from_numpy(t.astype(np.float64))
    pos = tt.mean()
    w = torch.where(tt > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    coef = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (w * F.binary_cross_entropy_with_logits(zt @ coef + b, tt, reduction="none")).mean() + lam * (coef ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return coef.detach().numpy(), float(b.detach())


def balanced_log_loss(s, t):
    p = 1 / (1 + np.exp(-s))
    ll = -(t * np.log(p + 1e-12) + (1 - t) * np.log(1 - p + 1e-12))
    return float(np.mean([ll[c].mean() for c in (t > 0.5, t < 0.5) if c.any()]))  # each class present, equally


def choose_lambda(z, t, image, lambdas, seed, folds=5):
    """5-fold CV on train, by image (an image and its augmented copies share a fold)."""
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(image.max() + 1) % folds
    scores = {}
    for lam in lambdas:
        losses = []
        for k in range(folds):
            te = fold_of[image] == k
            coef, b = fit_logistic(z[~te], t[~te], lam)
            losses.append(balanced_log_loss(z[te] @ coef + b, t[te]))
        scores[lam] = float(np.mean(losses))
    return min(scores, key=scores.get), scores


def fit_head(net, data, threshold, copies, zoom_range, val_zooms, seed, log, lambdas=LAMBDAS, ws=WS, cache=None, cache_key=None):
    """Fit the regression and choose w for net (a module returning mask and class logits, as exported).
    Returns (params for DescriptorFusion, report). With cache, the descriptors are kept in that .npz file
    and reused while cache_key is the same."""
    def run():
        return compute(net, data, threshold, copies, zoom_range, val_zooms, seed, log)
    feats = cached(cache, cache_key, run, log) if cache else run()

    # train: lesion images the networks outlined
    y, gate = feats["train_y"], feats["train_gate"]
    use = (y > 0) & (gate > 0)
    x, t, image = feats["train_f"][use], (y[use] == MALIGNANT).astype(np.float64), feats["train_image"][use]
    if not (t > 0.5).any() or not (t < 0.5).any():
        raise ValueError("the networks outline no train lesion of one class: no regression to fit")
    # a descriptor that hardly varies on train (a network that outlines every frame alike) must not be
    # blown up by its spread: floored at 1e-3 (BUSI's spreads are 0.11-1.19, so the floor never binds there)
    mu, sd = x.mean(0), np.maximum(x.std(0) + 1e-6, 1e-3)
    z = (x - mu) / sd
    lam, cv = choose_lambda(z, t, image, lambdas, seed)
    log("CV balanced log-loss by lambda:", json.dumps(cv), "-> lambda", lam)
    coef, b = fit_logistic(z, t, lam)
    log("coefficients (standardised):", json.dumps({n: round(float(c), 3) for n, c in zip(NAMES, coef)}), "intercept %.3f" % b)
    train_auc = auc(t > 0.5, z @ coef + b)
    log("train AUC malignant vs benign (descriptors alone): %.4f" % train_auc)

    def scores(w):
        by = {}
        for zz in val_zooms:
            k = "%g" % zz
            s = (((feats["val_f_" + k] - mu) / sd) @ coef + b) * feats["val_gate_" + k]
            m = class_metrics(feats["val_y"], softmax(feats["val_logits_" + k] + w * s[:, None] * DIRECTION))
            outlined = (feats["val_y"] > 0) & (feats["val_gate_" + k] > 0)
            m["auc_descriptors_alone_mvb"] = auc(feats["val_y"][outlined] == MALIGNANT, s[outlined])
            by[k] = m
        return {"w": w, **zoom_summary(by)}

    rows = [scores(float(w)) for w in ws]
    for r in rows:
        log(json.dumps(r))
    base = next(r for r in rows if r["w"] == 0)
    best = max(rows, key=lambda r: r["mean_auc_malignant"])
    log("chosen w %g: mean val AUC %.4f (w=0: %.4f), mean val malignant F1 %.4f (w=0: %.4f)"
        % (best["w"], best["mean_auc_malignant"], base["mean_auc_malignant"], best["mean_f1_malignant"], base["mean_f1_malignant"]))
    params = {"names": NAMES, "threshold": threshold, "mean": mu.tolist(), "std": sd.tolist(),
              "coef": coef.tolist(), "intercept": b, "weight": best["w"], "lambda": lam}
    report = {"copies": copies, "zoom_range": list(zoom_range), "seed": seed, "cv": cv,
              "train_auc_descriptors": train_auc, "rows": rows, "chosen_w": best["w"]}
    return params, report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="the networks of the ensemble, in export order")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "descriptor-head"))
    p.add_argument("--threshold", type=float, default=0.45, help="the mask threshold (model.json's)")
    p.add_argument("--copies", type=int, default=4, help="augmented copies of the train set (besides the plain one)")
    p.add_argument("--zoom-range", default="0.6,1.3")
    p.add_argument("--val-zooms", default="0.75,1,1.25")
    p.add_argument("--seed", type=int, default=43)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-tta", action="store_true", help="the exported graph has no flip TTA")
    args = p.parse_args()
    log = start_run(args)
    zoom_range, val_zooms = tuple(scales(args.zoom_range)), scales(args.val_zooms)
    key = json.dumps([[os.path.abspath(w) for w in args.weights], args.threshold, args.copies, zoom_range,
                      val_zooms, args.seed, NAMES] + (["no-tta"] if args.no_tta else []))
    net = load_members(args.weights)
    net = (net if args.no_tta else FlipTTA(net)).eval()
    data = load_arrays(args.data, 256, os.path.join(ROOT, "training", "cache"))
    params, report = fit_head(net, data, args.threshold, args.copies, zoom_range, val_zooms, args.seed, log,
                              cache=os.path.join(args.out, "features.npz"), cache_key=key)
    with open(os.path.join(args.out, "search.json"), "w") as f:
        json.dump({"weights": args.weights, **report}, f, indent=1)
    with open(os.path.join(args.out, "fusion.json"), "w") as f:
        json.dump(params, f, indent=1)


if __name__ == "__main__":
    main()
