#!/usr/bin/python3
"""Train the Sonogate Attention U-Net on BUSI and export it to ONNX + model.json.

One command (from the repository root):   npm run train
  = /usr/bin/python3 training/train.py  [--epochs 50 --size 192 --resume]

Fits on split 'train', picks the checkpoint and the mask threshold on 'val', and scores
'test' once at the end (at each image's original resolution). Progress goes to stdout and
to <out>/train.log. A checkpoint is written every epoch; --resume continues from it.
"""
import os

# OpenMP threads that busy-wait slow training to a crawl when other processes share the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import json
import math  # noqa: E402
import sys  # noqa: E402
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from augment import augment  # noqa: E402
from data import CLASSES, load_arrays, read_split, union_mask  # noqa: E402
from metrics import auc, binary_f1, dice_iou  # noqa: E402
from model import AttentionUNet  # noqa: E402
from preprocess import gray_from_file, to_input  # noqa: E402
from reference import write_reference  # noqa: E402

ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "default"))
    p.add_argument("--model-dir", default=os.path.join(ROOT, "model"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--export-only", action="store_true", help="skip training; export best.pt")
    p.add_argument("--tta", choices=["auto", "on", "off"], default="auto",
                   help="horizontal-flip test-time augmentation baked into the ONNX graph; auto = keep it if val dice + AUC gain > 0.005")
    return p.parse_args()


class Log:
    def __init__(self, path):
        self.f = open(path, "a")

    def __call__(self, *a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        self.f.write(s + "\n")
        self.f.flush()


def soft_dice_loss(logits, target):
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    return 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)


@torch.no_grad()
def predict(model, x, batch=16):
    model.eval()
    ms, cs = [], []
    for i in range(0, len(x), batch):
        m, c = model(x[i:i + batch])
        ms.append(m)
        cs.append(c)
    return torch.cat(ms), torch.cat(cs)


def class_metrics(labels, probs):
    labels = np.asarray(labels)
    pm = probs[:, 2]
    pred = probs.argmax(1)
    lesion = labels > 0
    return {
        "auc_malignant": auc(labels == 2, pm),
        "auc_malignant_vs_benign": auc(labels[lesion] == 2, pm[lesion]),
        "f1_malignant": binary_f1(labels == 2, pred == 2),
        "accuracy_3class": float((pred == labels).mean()),
    }


def evaluate_small(model, images, masks, labels, spec, threshold=0.5):
    x = torch.from_numpy(((images * spec["scale"] - spec["mean"]) / spec["std"])[:, None].astype(np.float32))
    ml, cl = predict(model, x)
    prob = torch.sigmoid(ml)[:, 0].numpy()
    cp = torch.softmax(cl, 1).numpy()
    lesion = labels > 0
    d = [dice_iou(prob[i] > threshold, masks[i] > 0)[0] for i in np.where(lesion)[0]]
    out = {"dice": float(np.mean(d))}
    out.update(class_metrics(labels, cp))
    return out, prob, cp


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed % (2**32))
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "train.log"))
    spec = {"size": [args.size, args.size], "channels": 1, "layout": "NCHW", "resize": "stretch",
            "scale": 1 / 255, "mean": 0.0, "std": 1.0}

    t0 = time.time()
    data = load_arrays(args.data, args.size, os.path.join(ROOT, "training", "cache"))
    xi, mi, yi, _ = data["train"]
    log("data: train %d val %d test %d (%.0fs to load)" % (len(xi), len(data["val"][0]), len(data["test"][0]), time.time() - t0))
    x_train = torch.from_numpy(xi[:, None] / 255.0).float()
    m_train = torch.from_numpy(mi[:, None]).float()
    y_train = torch.from_numpy(yi)

    model = AttentionUNet(args.base)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    total = args.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1)
    counts = np.bincount(yi, minlength=3)
    cw = torch.tensor(len(yi) / (3 * counts), dtype=torch.float32)
    g = torch.Generator().manual_seed(args.seed)
    start_epoch, best, history, train_seconds = 0, {"score": -1}, [], 0.0
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    best_path = os.path.join(args.out, "best.pt")
    if (args.resume or args.export_only) and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"]); ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        g.set_state(ck["gen"]); start_epoch, best, history = ck["epoch"], ck["best"], ck["history"]
        train_seconds = ck.get("train_seconds", 0.0)
        log("resumed at epoch %d" % start_epoch)
    log("model: Attention U-Net base %d, %d parameters, input %dx%d, %d epochs x %d steps, class weights %s"
        % (args.base, sum(p.numel() for p in model.parameters()), args.size, args.size, args.epochs,
           steps_per_epoch, [round(float(c), 2) for c in cw]))

    ema_decay = 0.99
    epoch = start_epoch
    while epoch < args.epochs and not args.export_only:
        model.train()
        te = time.time()
        perm = torch.randperm(len(x_train), generator=g)
        tot = {"loss": 0.0, "seg": 0.0, "cls": 0.0}
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            x, m = augment(x_train[idx], m_train[idx], g)
            ml, cl = model(x)
            seg = F.binary_cross_entropy_with_logits(ml, m) + soft_dice_loss(ml, m)
            cls = F.cross_entropy(cl, y_train[idx], weight=cw, label_smoothing=0.05)
            loss = seg + 0.5 * cls
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                d = min(ema_decay, (1 + s + epoch * steps_per_epoch) / (10 + s + epoch * steps_per_epoch))
                for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
                    if pe.dtype.is_floating_point:
                        pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                    else:
                        pe.copy_(pm)
            tot["loss"] += loss.item(); tot["seg"] += seg.item(); tot["cls"] += cls.item()
        epoch += 1
        train_seconds += time.time() - te
        val, _, _ = evaluate_small(ema, *data["val"][:3], spec)
        score = val["dice"] + val["auc_malignant"]
        history.append({"epoch": epoch, **{k: v / steps_per_epoch for k, v in tot.items()}, **val})
        mark = ""
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, **val}
            torch.save(ema.state_dict(), best_path)
            mark = " *best*"
        log("epoch %3d/%d  loss %.4f (seg %.4f cls %.4f)  val dice %.4f auc %.4f f1m %.4f acc %.3f  lr %.2e  %.0fs%s"
            % (epoch, args.epochs, tot["loss"] / steps_per_epoch, tot["seg"] / steps_per_epoch,
               tot["cls"] / steps_per_epoch, val["dice"], val["auc_malignant"], val["f1_malignant"],
               val["accuracy_3class"], sched.get_last_lr()[0], time.time() - te, mark))
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": g.get_state(), "epoch": epoch, "best": best,
                    "history": history, "train_seconds": train_seconds}, ckpt_path)

    net = AttentionUNet(args.base)
    net.load_state_dict(torch.load(best_path))
    net.eval()
    log("best epoch %d (val dice %.4f, auc %.4f)" % (best["epoch"], best["dice"], best["auc_malignant"]))
    final, tta = net, False
    if args.tta != "off":
        plain, _, _ = evaluate_small(net, *data["val"][:3], spec)
        flip, _, _ = evaluate_small(FlipTTA(net), *data["val"][:3], spec)
        log("val without TTA: dice %.4f auc %.4f | with flip TTA: dice %.4f auc %.4f"
            % (plain["dice"], plain["auc_malignant"], flip["dice"], flip["auc_malignant"]))
        # TTA doubles inference time: keep it only for a real gain on val
        if args.tta == "on" or flip["dice"] + flip["auc_malignant"] > plain["dice"] + plain["auc_malignant"] + TTA_MIN_GAIN:
            final, tta = FlipTTA(net).eval(), True
    log("test-time augmentation:", "horizontal flip (in the ONNX graph)" if tta else "none")

    # threshold on val
    _, vprob, _ = evaluate_small(final, *data["val"][:3], spec)
    vm, vl = data["val"][1], data["val"][2]
    sweep = {}
    for t in [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]:
        sweep[t] = float(np.mean([dice_iou(vprob[i] > t, vm[i] > 0)[0] for i in np.where(vl > 0)[0]]))
    threshold = max(sweep, key=sweep.get)
    log("val threshold sweep:", json.dumps(sweep), "-> threshold", threshold)

    test = evaluate_full(final, args.data, spec, threshold, "test")
    log("test (original resolution):", json.dumps(test))
    export(final, args, spec, threshold, best, test, train_seconds, log, tta)


@torch.no_grad()
def evaluate_full(model, data_dir, spec, threshold, split):
    """Scores at each image's own resolution: logits upsampled bilinearly, then thresholded."""
    rows = [r for r in read_split(data_dir) if r["split"] == split]
    dices, ious, probs, labels = [], [], [], []
    false_lesion = []
    lt = math.log(threshold / (1 - threshold))
    for r in rows:
        g = gray_from_file(os.path.join(data_dir, r["file"]))
        x = torch.from_numpy(to_input(g, spec))[None, None]
        ml, cl = model(x)
        up = F.interpolate(ml, size=g.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
        pred = up > lt
        y = CLASSES.index(r["class"])
        labels.append(y)
        probs.append(torch.softmax(cl, 1)[0].numpy())
        if y > 0:
            d, i = dice_iou(pred, union_mask(data_dir, r))
            dices.append(d); ious.append(i)
        else:
            false_lesion.append(bool(pred.any()))
    out = {"dice": float(np.mean(dices)), "iou": float(np.mean(ious))}
    out.update(class_metrics(labels, np.stack(probs)))
    out["normal_with_false_lesion"] = float(np.mean(false_lesion))
    out["n"] = len(rows)
    return out


TTA_MIN_GAIN = 0.005


class FlipTTA(torch.nn.Module):
    """The network and its horizontal mirror, logits averaged: ultrasound is left-right symmetric
    in meaning, and averaging the two views steadies masks and class scores on unseen scanners."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        m1, c1 = self.net(x)
        m2, c2 = self.net(torch.flip(x, dims=[3]))
        return (m1 + torch.flip(m2, dims=[3])) / 2, (c1 + c2) / 2


def export(model, args, spec, threshold, best, test, seconds, log, tta=False):
    import hashlib
    os.makedirs(args.model_dir, exist_ok=True)
    name = "attention-unet-busi"
    onnx_path = os.path.join(args.model_dir, name + ".onnx")
    dummy = torch.zeros(1, 1, args.size, args.size)
    torch.onnx.export(model, dummy, onnx_path, input_names=["image"], output_names=["mask_logits", "class_logits"],
                      dynamic_axes={"image": {0: "batch"}, "mask_logits": {0: "batch"}, "class_logits": {0: "batch"}},
                      opset_version=13, do_constant_folding=True)
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    meta = {
        "name": name, "version": "1.0.0", "file": name + ".onnx", "sha256": sha,
        "input": {"name": "image", **spec},
        "outputs": {"mask": {"name": "mask_logits", "activation": "sigmoid", "threshold": threshold},
                    "class": {"name": "class_logits", "activation": "softmax", "labels": CLASSES}},
        "training": {"data": "BUSI", "split": "split.csv", "epochs": args.epochs, "best_epoch": best["epoch"],
                     "seed": args.seed, "base_filters": args.base, "batch": args.batch, "lr": args.lr,
                     "test_time_augmentation": "hflip" if tta else "none",
                     "train_seconds": round(seconds), "torch": torch.__version__},
        "metrics": {"val": {k: best[k] for k in ("dice", "auc_malignant", "f1_malignant")},
                    "test": {k: test[k] for k in ("dice", "iou", "auc_malignant", "f1_malignant")},
                    "test_scorer": "training/train.py (python)"},
    }
    with open(os.path.join(args.model_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    write_reference(model, args.size, os.path.join(args.model_dir, "reference-outputs.json"))
    torch.save(model.state_dict(), os.path.join(args.out, "final.pt"))
    log("exported", onnx_path, sha)


if __name__ == "__main__":
    main()
