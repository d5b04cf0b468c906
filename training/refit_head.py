#!/usr/bin/python3
"""Refit only the class head of trained networks, with the rest frozen (issue 3: the head overfits).

In the joint training the class head's malignant AUC peaks early and falls while the mask still
improves, so the head at the epoch chosen for Dice + AUC is a compromise. Here the networks are
frozen and their averaged heads are refitted as one multinomial logistic regression on the
pooled features (training/model.py AttentionUNet.features) of augmented train images, with an
L2 pull towards the current heads: lambda -> infinity gives the current heads back exactly, so
the search includes the baseline. Lambda is chosen on val (shown plain and mirrored, as the
exported graph does, at the --val-zooms sizes); test is never read.

  /usr/bin/python3 training/refit_head.py training/runs/cpu-zoom-ft3/best.pt training/runs/cpu-zoom-b16long/best.pt \\
      --out training/runs/refit-head

Writes <out>/features.npz (a cache, reused only for the same networks and settings), <out>/search.json, and, for the chosen
lambda, one weights file per network (<out>/member<i>.pt) for train.py --export-only --checkpoints.
The masks are untouched: the head's input is computed with the mask detached, and only cls.* changes.
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
from runtools import cached, scales, softmax, start_run, zoom_summary  # noqa: E402
from train import ROOT, class_metrics, load_members  # noqa: E402

HEAD = ("cls.1.weight", "cls.1.bias")


@torch.no_grad()
def pooled(net, x, flip_average, batch=16):
    """N x D head inputs; with flip_average, the mean over the image and its mirror (the head is
    linear, so this equals averaging the two views' logits, as the exported graph does)."""
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        f = net.features(xb)[1]
        if flip_average:
            f = (f + net.features(torch.flip(xb, dims=[3]))[1]) / 2
        out.append(f)
    return torch.cat(out).numpy()


def compute_features(nets, data, copies, zoom_range, val_zooms, seed, log):
    xi, mi, yi, _ = data["train"]
    x = torch.from_numpy(xi[:, None] / 255.0).float()
    m = torch.from_numpy(mi[:, None]).float()
    g = torch.Generator().manual_seed(seed)
    train_f, train_y = [], []
    for k in range(copies + 1):  # copy 0: the train images as they are
        t = time.time()
        xa = x if k == 0 else torch.cat([augment(x[i:i + 32], m[i:i + 32], g, zoom_range)[0] for i in range(0, len(x), 32)])
        train_f.append(np.concatenate([pooled(n, xa, False) for n in nets], axis=1))
        train_y.append(yi)
        log("train copy %d/%d: %.0f s" % (k, copies, time.time() - t))
    out = {"train_f": np.concatenate(train_f), "train_y": np.concatenate(train_y), "val_y": data["val"][2]}
    for z in val_zooms:
        im, _ = zoom_images_and_masks(data["val"][0], data["val"][1], z)
        xv = torch.from_numpy((im / 255.0)[:, None].astype(np.float32))
        out["val_f_%g" % z] = np.concatenate([pooled(n, xv, True) for n in nets], axis=1)
        log("val at zoom %g done" % z)
    return out


def current_head(states):
    """The averaged heads as one linear map on the concatenated features: logits = f @ A + c."""
    a = np.concatenate([s[HEAD[0]].numpy().T for s in states], axis=0) / len(states)
    c = np.mean([s[HEAD[1]].numpy() for s in states], axis=0)
    return a, c


def split_heads(a, c, states):
    """The inverse of current_head: member i's head is its block of A times the member count (the
    graph averages the members), with the shared bias. Returns new state dicts; only cls.* differs."""
    d = a.shape[0] // len(states)
    out = []
    for i, s in enumerate(states):
        s = dict(s)
        s[HEAD[0]] = torch.from_numpy(np.ascontiguousarray(a[i * d:(i + 1) * d].T * len(states))).float()
        s[HEAD[1]] = torch.from_numpy(np.asarray(c)).float()
        out.append(s)
    return out


def fit(zt, y, a0, c0, lam, class_weight, steps=200):
    """Weighted cross-entropy (label smoothing 0.05, as in training) + lam * ||A - A0||^2 / D, by L-BFGS,
    on standardised features zt; a0, c0 already in standardised coordinates."""
    zt = torch.from_numpy(zt).float()
    y = torch.from_numpy(y).long()
    A0 = torch.from_numpy(np.ascontiguousarray(a0)).float()
    A = A0.clone().requires_grad_(True)
    c = torch.from_numpy(c0).float().clone().requires_grad_(True)
    w = torch.tensor(class_weight, dtype=torch.float32)
    opt = torch.optim.LBFGS([A, c], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(zt @ A + c, y, weight=w, label_smoothing=0.05) + lam * ((A - A0) ** 2).sum() / A.shape[0]
        loss.backward()
        return loss

    opt.step(closure)
    return A.detach().numpy(), c.detach().numpy()


def val_scores(feats, a, c, val_zooms):
    return zoom_summary({"%g" % z: class_metrics(feats["val_y"], softmax(feats["val_f_%g" % z] @ a + c)) for z in val_zooms})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="the networks of the ensemble, in export order")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "refit-head"))
    p.add_argument("--copies", type=int, default=6, help="augmented copies of the train set (besides the plain one)")
    p.add_argument("--zoom-range", default="0.6,1.3")
    p.add_argument("--val-zooms", default="0.75,1,1.25")
    p.add_argument("--lambdas", default="0.001,0.003,0.01,0.03,0.1,0.3,1,3,10")
    p.add_argument("--seed", type=int, default=41)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    log = start_run(args)
    zoom_range, val_zooms = tuple(scales(args.zoom_range)), scales(args.val_zooms)
    nets = [load_members([w]) for w in args.weights]
    states = [n.state_dict() for n in nets]
    # what the features were computed from: a cache made for other networks or settings is not reused
    key = json.dumps([[os.path.abspath(w) for w in args.weights], args.copies, zoom_range, val_zooms, args.seed])
    feats = cached(os.path.join(args.out, "features.npz"), key, lambda: compute_features(
        nets, load_arrays(args.data, 256, os.path.join(ROOT, "training", "cache")), args.copies, zoom_range, val_zooms,
        args.seed, log), log)

    x, y = feats["train_f"], feats["train_y"]
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a_raw, c_raw = current_head(states)
    # the current heads in standardised coordinates: f @ A + c = ((f - mu) / sd) @ (sd * A) + (mu @ A + c)
    a0, c0 = a_raw * sd[:, None], c_raw + mu @ a_raw
    counts = np.bincount(y, minlength=3)
    cw = len(y) / (3 * counts)

    def raw(a, c):
        return a / sd[:, None], c - (mu / sd) @ a

    def row(name, a, c):
        train_auc = class_metrics(y, softmax(x @ a + c))["auc_malignant"]
        r = {"lambda": name, "train_auc_malignant": round(train_auc, 4), **val_scores(feats, a, c, val_zooms)}
        log(json.dumps(r))
        return r

    rows = [row("current heads", a_raw, c_raw)]
    fits = {}
    for lam in [float(v) for v in args.lambdas.split(",")]:
        fits[lam] = raw(*fit((x - mu) / sd, y, a0, c0, lam, cw))
        rows.append(row(lam, *fits[lam]))
    best = max(rows[1:], key=lambda r: (r["mean_auc_malignant"], r["mean_f1_malignant"]))
    chosen = best if best["mean_auc_malignant"] > rows[0]["mean_auc_malignant"] else None
    with open(os.path.join(args.out, "search.json"), "w") as f:
        json.dump({"weights": args.weights, "copies": args.copies, "zoom_range": zoom_range, "seed": args.seed,
                   "rows": rows, "chosen_lambda": chosen and chosen["lambda"]}, f, indent=1)
    if not chosen:
        log("no lambda beats the current heads on val: nothing written")
        return
    for i, s in enumerate(split_heads(*fits[chosen["lambda"]], states)):
        torch.save(s, os.path.join(args.out, "member%d.pt" % i))
    log("chose lambda %g: mean val AUC %.4f (current heads %.4f); wrote %s"
        % (chosen["lambda"], chosen["mean_auc_malignant"], rows[0]["mean_auc_malignant"],
           ", ".join("member%d.pt" % i for i in range(len(states)))))


if __name__ == "__main__":
    main()
