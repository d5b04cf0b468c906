#!/usr/bin/python3
"""Train the Sonogate Attention U-Net on BUSI and export it to ONNX + model.json.

One command (from the repository root):   npm run train  [-- --resume]
  = npm run train:weights   (the ImageNet MobileNetV2 weights, once: training/pretrained/extract_nsfwjs.js --ensure)
    && /usr/bin/python3 training/cpu_recipe.py --channels-last --member-seconds 2700
    (since session 41, rule 37 in model/EXPERIMENTS.md: this file twice with --arch mobilenetv2
    --encoder-lr 0.3 --lr 1e-3 --size 128 --dice image --normal-penalty 0.25 --zoom-range 0.5,1.3
    --val-zooms 0.5,0.75,1,1.25 --select-normal-weight 0.25 --train-only, seeds 20261126 and 20261127,
    2,700 s each in channels-last, then once with --export-only --checkpoints <both> --descriptor-head
    fit --class-temperature fit: the Attention U-Net's decoder and class head on a MobileNetV2 encoder
    that starts from ImageNet weights, at 128x128 with a soft Dice per lesion image, scale
    augmentation 0.5-1.3 and a penalty on lesion-like pixels in images without a lesion, each
    checkpoint chosen on val at four scales; the exported graph averages the two, resizes its
    256x256 input to 128 and its mask back (training/resized.py), and adds the lesion-descriptor
    regression (training/descriptor_head.py) and a class temperature (training/temperature.py)
    fitted on val; 109-120 min on a 2-core CPU with loading, validation, the test score and the
    export. Before rule 37 it was this file once with --time-budget 6300, rule 22.) The schedule
    follows elapsed time, so a faster machine trains more epochs in the same time; --epochs N
    without --time-budget gives a fixed number of epochs instead.

On a GPU (see training/gpu/run.sh): --device cuda --arrays <packed train+val> --time-budget S
--train-only --compact-out DIR trains without the BUSI folder and hands back the best weights;
--export-only --checkpoints a.pt,b.pt,... then exports them here (several = an ensemble whose
logits are averaged in the ONNX graph).

Fits on split 'train', picks the checkpoint and the mask threshold on 'val', and scores
'test' once at the end (at each image's original resolution). Progress goes to stdout and
to <out>/train.log. A checkpoint is written every epoch (every 25 on a GPU under --time-budget);
--resume continues from it.
"""
import os

# OpenMP threads that busy-wait slow training to a crawl when other processes share the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
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
from augment import DEFAULT_ZOOM, augment, zoom_images_and_masks  # noqa: E402
from data import CLASSES, load_arrays, read_split, union_mask  # noqa: E402
from descriptors import DescriptorFusion  # noqa: E402
from metrics import auc, binary_f1, dice_iou  # noqa: E402
from normal_bound import choose_normal_bound, suppressed  # noqa: E402
from model import AttentionUNet, MobileAttentionUNet, network_for  # noqa: E402
from mobilenet import load_imagenet  # noqa: E402
from preprocess import gray_from_file, to_input  # noqa: E402
from reference import write_reference  # noqa: E402
from resized import Resized, split_size  # noqa: E402
from temperature import Tempered, fit_temperature, log_loss, tempered  # noqa: E402
from weights import load_state, save_atomic, save_compact  # noqa: E402

ROOT = os.path.dirname(HERE)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "default"))
    p.add_argument("--model-dir", default=os.path.join(ROOT, "model"))
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "training", "cache"), help="where the resized arrays are cached")
    p.add_argument("--epochs", type=int, default=36)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--base", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--arrays", help="packed train+val file from training/pack.py (instead of --data)")
    p.add_argument("--time-budget", type=float, default=0,
                   help="seconds of training; the learning-rate schedule follows elapsed time (GPU runs)")
    p.add_argument("--low-size", type=int, default=0,
                   help="progressive resizing: train the first --low-share of the schedule at this size (fast on a CPU)")
    p.add_argument("--low-share", type=float, default=0.5,
                   help="share of the schedule (steps, or seconds under --time-budget) spent at --low-size")
    p.add_argument("--train-only", action="store_true", help="stop after training (no test, no export)")
    p.add_argument("--compact-out", help="also write the best weights here as float16 parts (training/weights.py)")
    p.add_argument("--reset-average-at-switch", action="store_true",
                   help="with --low-size: at the first full-size epoch, restart the moving average of the weights "
                        "(the weights validated and kept) from the network's own, instead of carrying the low-size "
                        "average for several epochs (rule 33 in model/EXPERIMENTS.md)")
    p.add_argument("--channels-last", action="store_true",
                   help="train in channels-last memory layout (same network and weights; faster convolutions on some GPUs, "
                        "and on this 2-core CPU for --arch mobilenetv2: a 128x128 epoch in 27 s instead of 39, rule 33)")
    p.add_argument("--zoom-range", default="%g,%g" % DEFAULT_ZOOM,
                   help="LO,HI: scale augmentation of the picture (below 1 it shrinks, as at a greater depth)")
    p.add_argument("--val-zooms", default="1",
                   help="comma-separated scales of the val pictures (1 = as they are); a checkpoint's score is the\n"
                   "mean val dice + AUC over them, e.g. 0.75,1,1.25 to choose weights that hold at other depths")
    p.add_argument("--dice", choices=["batch", "image"], default="batch",
                   help="soft Dice over the whole batch (large lesions weigh most), or per image, averaged over the\n"
                   "batch's lesion images (each lesion weighs the same, as in the metric)")
    p.add_argument("--normal-penalty", type=float, default=0.0,
                   help="weight of a loss on the images without a lesion: the mean lesion probability of their\n"
                   "most lesion-like 1 %% of pixels (a false outline needs a confident blob, which the\n"
                   "pixel-averaged BCE barely sees); 0 = off")
    p.add_argument("--class-weight", type=float, default=0.5,
                   help="weight of the class cross-entropy against the mask loss (0.5 in every shipped network)")
    p.add_argument("--class-detach-at", type=float, default=None,
                   help="from this share of the schedule on (0..1), the class loss trains only the class head:\n"
                   "its pooled input is detached, so the encoder and decoder learn from the mask loss alone\n"
                   "(rule 38 in model/EXPERIMENTS.md: val AUC peaked at 20-32 %% of the 2,700 s networks and fell\n"
                   "while Dice still rose); default: never",)
    p.add_argument("--class-mixup", type=float, default=0.0,
                   help="manifold mixup on the class head's input: each image's pooled features blended with\n"
                   "another's of the batch by lam ~ Beta(A, A), and the two labels' losses alike (rule 39 in\n"
                   "model/EXPERIMENTS.md); 0 = off")
    p.add_argument("--select-normal-weight", type=float, default=0.0,
                   help="choose the checkpoint by its val score minus this weight times the share of normal val\n"
                   "images with any pixel above %g at full size (a false outline there); 0 = off" % SELECT_OUTLINE_THRESHOLD)
    p.add_argument("--arch", choices=["unet", "mobilenetv2"], default="unet",
                   help="unet: the Attention U-Net of --base filters; mobilenetv2: the same decoder and class head\n"
                        "on a MobileNetV2 encoder (training/model.py MobileAttentionUNet)")
    p.add_argument("--pretrained", default=os.path.join(ROOT, "training", "cache", "mobilenet_v2_imagenet"),
                   help="with --arch mobilenetv2 and no --init: ImageNet weights for the encoder, from\n"
                        "training/pretrained/extract_nsfwjs.js ('none' starts it from random weights)")
    p.add_argument("--encoder-lr", type=float, default=1.0,
                   help="with --arch mobilenetv2: the encoder's learning rate as a share of --lr")
    p.add_argument("--encoder-l2sp", type=float, default=0.0,
                   help="with --arch mobilenetv2: after each step, pull the encoder's weights back towards its starting\n"
                        "(ImageNet) weights by lr x this x (w - w0), decoupled as AdamW's decay is (L2-SP, Li et al. 2018)")
    p.add_argument("--init", help="start from these weights (a second cosine cycle) instead of random ones")
    p.add_argument("--model-version", help="version for model.json; result UIDs derive from it, so the default\n"
                   "is 'dev-' + the ONNX file's first 8 sha256 digits: new weights never reuse a release's UIDs")
    p.add_argument("--facts", help="JSON file merged into model.json's training facts (how a GPU run was made)")
    p.add_argument("--checkpoints", help="comma-separated weights to export (default <out>/best.pt)")
    p.add_argument("--export-only", action="store_true", help="skip training; export best.pt")
    p.add_argument("--low-agreement-above", type=float,
                   help="(an ensemble) add the output class_spread, the networks' spread of P(malignant) (training/spread.py),\n"
                        "and this cut to model.json's outputs.spread: above it the report says the networks disagree\n"
                        "(chosen on val with training/disagreement.py)")
    p.add_argument("--most-suspicious-when-disagreeing", action="store_true",
                   help="(with --low-agreement-above) above that cut the class logits are the network's with the highest\n"
                        "P(malignant), not the average's (rule 30, training/max_rule.py)")
    p.add_argument("--descriptor-head", help="add a lesion-descriptor regression's log-odds to the exported class logits\n"
                   "(training/descriptors.py): 'fit' fits it here on train, its weight chosen on val; or a fusion.json\n"
                   "from training/descriptor_head.py")
    p.add_argument("--class-temperature", help="divide the exported class logits by a temperature: 'fit' chooses it on val by\n"
                   "the log-loss (training/temperature.py), or a number; no image's argmax changes")
    p.add_argument("--tta", choices=["auto", "on", "off"], default="auto",
                   help="horizontal-flip test-time augmentation baked into the ONNX graph; auto = keep it if val dice + AUC gain > 0.005")
    args = p.parse_args()
    try:
        args.zoom_range = tuple(float(v) for v in args.zoom_range.split(","))
    except ValueError:
        args.zoom_range = ()
    if len(args.zoom_range) != 2 or not 0 < args.zoom_range[0] <= args.zoom_range[1]:
        p.error("--zoom-range must be LO,HI with 0 < LO <= HI, e.g. 0.65,1.3")
    try:
        args.val_zooms = [float(v) for v in args.val_zooms.split(",")]
    except ValueError:
        args.val_zooms = []
    if not args.val_zooms or min(args.val_zooms) <= 0 or 1.0 not in args.val_zooms:
        p.error("--val-zooms must be positive scales that include 1, e.g. 0.75,1,1.25")
    if args.class_temperature not in (None, "fit"):
        try:
            if float(args.class_temperature) <= 0:
                raise ValueError
        except ValueError:
            p.error("--class-temperature must be 'fit' or a positive number")
    if args.low_size and (args.low_size % 16 or not 0 <= args.low_share < 1):
        p.error("--low-size must be a multiple of 16 and --low-share in [0, 1)")
    if args.reset_average_at_switch and not args.low_size:
        p.error("--reset-average-at-switch needs --low-size (there is no switch without it)")
    return args


class Log:
    def __init__(self, path):
        self.f = open(path, "a")

    def __call__(self, *a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        self.f.write(s + "\n")
        self.f.flush()


def torch_load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13
        return torch.load(path, map_location="cpu")


def load_packed(path):
    """training/pack.py output -> the same dict of splits load_arrays returns (train, val only)."""
    import gzip
    from pack import unpack_masks
    import io
    with gzip.open(path, "rb") as f:
        d = torch_load(io.BytesIO(f.read()))
    out = {}
    for split in ("train", "val"):
        e = d[split]
        out[split] = (e["images"].float().numpy(), unpack_masks(e["masks_bits"], e["images"].shape[-1]).numpy(),
                      e["labels"].numpy(), np.array(e["files"]))
    return out, d["size"]


def forward_for_loss(model, x, class_head_only=False):
    """Mask logits and the class head's pooled input for the training loss; with class_head_only
    (--class-detach-at) the pooled input is detached, so the class loss reaches the head's own
    weights and nothing else."""
    mask_logits, pooled = model.features(x)
    return mask_logits, pooled.detach() if class_head_only else pooled


def class_loss(head, pooled, y, weight, mix=None):
    """The class cross-entropy (label smoothing 0.05). mix = (lam, perm), --class-mixup: the head sees
    each image's pooled features blended with another's of the batch, lam x own + (1 - lam) x the
    other's, and the loss blends the two labels' cross-entropies alike (manifold mixup on the class
    head's input only; the outlines are untouched)."""
    if mix is None:
        return F.cross_entropy(head(pooled), y, weight=weight, label_smoothing=0.05)
    lam, perm = mix
    logits = head(lam * pooled + (1 - lam) * pooled[perm])
    return (lam * F.cross_entropy(logits, y, weight=weight, label_smoothing=0.05)
            + (1 - lam) * F.cross_entropy(logits, y[perm], weight=weight, label_smoothing=0.05))


def lr_factor(progress, warmup=0.05):
    """Linear warm-up, then cosine decay to zero, as a function of progress 0..1."""
    if progress < warmup:
        return 0.04 + 0.96 * progress / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def soft_dice_loss(logits, target, per_image=False):
    """1 - soft Dice. Over the whole batch by default; per_image: one Dice per image with a lesion,
    averaged (images without one are left to the BCE term; a batch without any falls back to the
    whole-batch Dice)."""
    p = torch.sigmoid(logits)
    if per_image:
        lesion = target.flatten(1).sum(1) > 0
        if lesion.any():
            p, t = p[lesion].flatten(1), target[lesion].flatten(1)
            return (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()
    inter = (p * target).sum()
    return 1 - (2 * inter + 1) / (p.sum() + target.sum() + 1)


def normal_outline_loss(logits, target, share=0.01):
    """Mean, over the batch's images without a lesion, of the mean lesion probability of their
    most lesion-like `share` of pixels; 0 when every image in the batch has a lesion."""
    empty = target.flatten(1).sum(1) == 0
    if not empty.any():
        return logits.new_zeros(())
    p = torch.sigmoid(logits[empty]).flatten(1)
    return p.topk(max(1, round(p.shape[1] * share)), dim=1).values.mean()


SELECT_OUTLINE_THRESHOLD = 0.4  # the threshold training/tta_search.py judges candidates at


def normal_outlined(prob, labels, threshold=SELECT_OUTLINE_THRESHOLD):
    """Share of the images without a lesion (label 0) with any pixel of prob above threshold."""
    normal = labels == 0
    return float((prob[normal].reshape(int(normal.sum()), -1) > threshold).any(1).mean()) if normal.any() else 0.0


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


def evaluate_small(model, images, masks, labels, spec, threshold=0.5, device="cpu", size=None):
    """Val metrics; with size, the network sees the images resized to size x size (progressive
    resizing) and its mask logits are resized back to the masks' size."""
    x = torch.from_numpy(((images * spec["scale"] - spec["mean"]) / spec["std"])[:, None].astype(np.float32)).to(device)
    if size and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="area")
    ml, cl = predict(model, x)
    if ml.shape[-1] != masks.shape[-1]:
        ml = F.interpolate(ml.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    prob = torch.sigmoid(ml.float())[:, 0].cpu().numpy()
    cp = torch.softmax(cl.float(), 1).cpu().numpy()
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
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cudnn.benchmark = True
    os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "train.log"))

    t0 = time.time()
    if args.arrays:
        data, size = load_packed(args.arrays)
        if size != args.size:
            raise SystemExit("--arrays holds %dx%d images but --size is %d" % (size, size, args.size))
    else:
        data = load_arrays(args.data, args.size, args.cache_dir)
    spec = {"size": [args.size, args.size], "channels": 1, "layout": "NCHW", "resize": "stretch",
            "scale": 1 / 255, "mean": 0.0, "std": 1.0}
    log("data: %s (%.0fs to load), device %s, torch %s" % (
        ", ".join("%s %d" % (k, len(v[0])) for k, v in data.items()), time.time() - t0, device, torch.__version__))

    if args.export_only:
        paths = args.checkpoints.split(",") if args.checkpoints else [os.path.join(args.out, "best.pt")]
        net = load_members(paths)
        best_json = os.path.join(args.out, "best.json")
        info = json.load(open(best_json)) if os.path.exists(best_json) else {}
        finish(net, args, spec, data, info, log, paths)
        return

    best, train_seconds = train(args, data, spec, device, cuda, log)
    if args.train_only:
        return
    best_path = os.path.join(args.out, "best.pt")
    finish(load_members([best_path]), args, spec, data, {**best, "train_seconds": round(train_seconds)}, log, [best_path])


def train(args, data, spec, device, cuda, log):
    xi, mi, yi, _ = data["train"]
    x_train = torch.from_numpy(xi[:, None] / 255.0).float().to(device)
    m_train = torch.from_numpy(mi[:, None]).float().to(device)
    y_train = torch.from_numpy(yi).to(device)
    if args.low_size:  # progressive resizing: the same images, downsized once
        low = (args.low_size, args.low_size)
        x_low = F.interpolate(x_train, size=low, mode="area")
        m_low = (F.interpolate(m_train, size=low, mode="area") >= 0.5).float()

    model = MobileAttentionUNet() if args.arch == "mobilenetv2" else AttentionUNet(args.base)
    if args.init:
        model.load_state_dict(load_state(args.init))
        log("initialised from", args.init)
    elif args.arch == "mobilenetv2" and args.pretrained != "none":
        if not os.path.exists(args.pretrained + ".json"):
            raise SystemExit("no ImageNet weights at %s(.json, .bin): make them with npm run train:weights "
                             "(training/pretrained/extract_nsfwjs.js --ensure; see its header), or pass --pretrained none to start from random weights" % args.pretrained)
        log("encoder: %d ImageNet tensors from %s" % (load_imagenet(model.encoder, args.pretrained), args.pretrained))
    model = model.to(device)
    # L2-SP's anchor: the encoder as it starts (ImageNet or --init), before any --resume
    # (parameter objects survive .to(memory_format=...), so the list is built once)
    l2sp_params = list(model.encoder.parameters()) if args.arch == "mobilenetv2" and args.encoder_l2sp else None
    anchor = [p.detach().clone() for p in l2sp_params] if l2sp_params else None
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    # fused: one kernel for the whole update instead of several per tensor (small GPU steps are launch-heavy)
    if args.arch == "mobilenetv2" and args.encoder_lr != 1.0:
        encoder = set(id(p) for p in model.encoder.parameters())
        groups = [{"params": [p for p in model.parameters() if id(p) in encoder], "lr_share": args.encoder_lr},
                  {"params": [p for p in model.parameters() if id(p) not in encoder], "lr_share": 1.0}]
    else:
        groups = [{"params": list(model.parameters()), "lr_share": 1.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=1e-4, **({"fused": True} if cuda else {}))
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    max_epochs = args.epochs if not args.time_budget else 100000
    total = args.epochs * steps_per_epoch
    counts = np.bincount(yi, minlength=3)
    cw = torch.tensor(len(yi) / (3 * counts), dtype=torch.float32, device=device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    start_epoch, step, best, history, train_seconds = 0, 0, {"score": -1}, [], 0.0
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    best_path = os.path.join(args.out, "best.pt")
    if args.resume and os.path.exists(ckpt_path):
        ck = torch_load(ckpt_path)
        model.load_state_dict(ck["model"]); ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"]); g.set_state(ck["gen"])
        start_epoch, step, best, history = ck["epoch"], ck["step"], ck["best"], ck["history"]
        train_seconds = ck.get("train_seconds", 0.0)
        log("resumed at epoch %d" % start_epoch)
    log("model: %s, %d parameters, input %dx%d, %s x %d steps, batch %d, class weights %s%s"
        % ("Attention U-Net on a MobileNetV2 encoder (encoder lr x %g)" % args.encoder_lr if args.arch == "mobilenetv2"
           else "Attention U-Net base %d" % args.base, sum(p.numel() for p in model.parameters()), args.size, args.size,
           "%.0f s" % args.time_budget if args.time_budget else "%d epochs" % args.epochs,
           steps_per_epoch, args.batch, [round(float(c), 2) for c in cw],
           ", channels-last" if args.channels_last else ""))
    log("loss: BCE + soft Dice %s%s + %g x class cross-entropy; lr %g, scale augmentation %g-%g, seed %d"
        % ("per lesion image" if args.dice == "image" else "over the batch",
           " + %g x the top-1 %% lesion probability of images without a lesion" % args.normal_penalty if args.normal_penalty else "",
           args.class_weight, args.lr, *args.zoom_range, args.seed))
    if args.class_mixup:
        log("class head: manifold mixup of its pooled input, Beta(%g, %g)" % (args.class_mixup, args.class_mixup))
    if args.class_detach_at is not None:
        log("from %.0f%% of the schedule on, the class loss trains the class head only (its input detached)" % (100 * args.class_detach_at))
    if anchor is not None:
        log("L2-SP: the encoder is pulled back towards its starting weights by lr x %g x (w - w0) after each step" % args.encoder_l2sp)
    if args.low_size:
        log("progressive resizing: %dx%d for the first %.0f%% of the schedule, then %dx%d (only those epochs are candidates)"
            % (args.low_size, args.low_size, 100 * args.low_share, args.size, args.size))

    def progress(seconds_this_epoch=0.0):
        """0..1: by elapsed training time under --time-budget, else by optimizer steps."""
        if args.time_budget:
            return min(1.0, (train_seconds + seconds_this_epoch) / args.time_budget)
        return step / total

    ema_decay = 0.995 if args.time_budget else 0.99
    ema_float = [v for v in ema.state_dict().values() if v.dtype.is_floating_point]
    ema_other = [v for v in ema.state_dict().values() if not v.dtype.is_floating_point]
    model_float = [v for v in model.state_dict().values() if v.dtype.is_floating_point]
    model_other = [v for v in model.state_dict().values() if not v.dtype.is_floating_point]
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    # the val pictures at other scales (--val-zooms), made once
    zoomed_val = {z: zoom_images_and_masks(data["val"][0], data["val"][1], z) for z in args.val_zooms if z != 1.0}
    epoch = start_epoch
    # the step the moving average counts its warm-up from (--reset-average-at-switch moves it)
    average_from = next((e["average_from_step"] for e in reversed(history) if "average_from_step" in e), 0)

    def at_low_size():
        return bool(args.low_size) and progress() < args.low_share

    while epoch < max_epochs and progress() < 1:
        model.train()
        te = time.time()
        low_phase = at_low_size()  # an epoch runs at one size; the schedule switches between epochs
        xs, ms = (x_low, m_low) if low_phase else (x_train, m_train)
        if args.reset_average_at_switch and not low_phase and history and history[-1]["size"] != args.size:
            ema.load_state_dict(model.state_dict())
            average_from = step  # the average's warm-up starts again, as at the first step
            log("switch to %dx%d: the moving average of the weights restarts from the network's" % (args.size, args.size))
        perm = torch.randperm(len(x_train), generator=g, device=device)
        tot = torch.zeros(3, device=device)
        for s in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = args.lr * group["lr_share"] * lr_factor(progress(time.time() - te))
            idx = perm[s * args.batch:(s + 1) * args.batch]
            x, m = augment(xs[idx], ms[idx], g, args.zoom_range)
            x = x.contiguous(memory_format=fmt)
            with autocast():
                ml, pooled = forward_for_loss(model, x, args.class_detach_at is not None
                                              and progress(time.time() - te) >= args.class_detach_at)
            ml = ml.float()
            seg = F.binary_cross_entropy_with_logits(ml, m) + soft_dice_loss(ml, m, args.dice == "image")
            if args.normal_penalty:
                seg = seg + args.normal_penalty * normal_outline_loss(ml, m)
            mix = None
            if args.class_mixup:
                # the blend weight derives from the seed and the step, so --resume draws the same ones
                mix = (float(np.random.default_rng([args.seed, step]).beta(args.class_mixup, args.class_mixup)),
                       torch.randperm(len(idx), generator=g, device=device))
            with autocast():
                cls = class_loss(model.cls, pooled, y_train[idx], cw, mix)
            cls = cls.float()
            loss = seg + args.class_weight * cls
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if anchor is not None:
                with torch.no_grad():  # w -= lr_encoder x alpha x (w - w0)
                    drift = torch._foreach_sub(l2sp_params, anchor)
                    torch._foreach_add_(l2sp_params, drift, alpha=-opt.param_groups[0]["lr"] * args.encoder_l2sp)
            step += 1
            with torch.no_grad():
                d = min(ema_decay, (1 + step - average_from) / (10 + step - average_from))
                torch._foreach_mul_(ema_float, d)
                torch._foreach_add_(ema_float, model_float, alpha=1 - d)
                for pe, pm in zip(ema_other, model_other):
                    pe.copy_(pm)
                tot += torch.stack([loss.detach(), seg.detach(), cls.detach()])
        epoch += 1
        train_seconds += time.time() - te
        val, val_prob, _ = evaluate_small(ema, *data["val"][:3], spec, device=device,
                                          size=args.low_size if low_phase else None)
        val["normal_outlined"] = normal_outlined(val_prob, data["val"][2])
        # a low-size epoch is not a candidate: the export runs at full size
        score = -1 if low_phase else val["dice"] + val["auc_malignant"]
        if not low_phase and zoomed_val:
            at = {1.0: score}
            for z, (zi, zm) in zoomed_val.items():
                zv, _, _ = evaluate_small(ema, zi, zm, data["val"][2], spec, device=device)
                at[z] = zv["dice"] + zv["auc_malignant"]
            val["score_by_zoom"] = {"%g" % z: round(v, 4) for z, v in sorted(at.items())}
            score = float(np.mean(list(at.values())))
        if not low_phase and args.select_normal_weight:
            score -= args.select_normal_weight * val["normal_outlined"]
        tot = (tot / steps_per_epoch).tolist()
        history.append({"epoch": epoch, "size": xs.shape[-1], "loss": tot[0], "seg": tot[1], "cls": tot[2],
                        **({"average_from_step": average_from} if average_from else {}), **val})
        mark = ""
        if score > best["score"]:
            best = {"score": score, "epoch": epoch, **val}
            save_atomic(ema.state_dict(), best_path)
            with open(os.path.join(args.out, "best.json"), "w") as f:
                json.dump({**best, "train_seconds": round(train_seconds)}, f)
            mark = " *best*"
            if args.compact_out and progress() > 0.5:  # a run cut short still hands back its best
                write_compact(args, best_path)
        by_zoom = "  dice+auc by zoom %s" % json.dumps(val["score_by_zoom"]) if "score_by_zoom" in val else ""
        log("epoch %3d  %dpx  loss %.4f (seg %.4f cls %.4f)  val dice %.4f auc %.4f f1m %.4f acc %.3f normal outlined %.2f  lr %.2e  %.1fs  %.0f%%%s%s"
            % (epoch, xs.shape[-1], tot[0], tot[1], tot[2], val["dice"], val["auc_malignant"], val["f1_malignant"],
               val["accuracy_3class"], val["normal_outlined"], opt.param_groups[-1]["lr"], time.time() - te, 100 * progress(), by_zoom, mark))
        if not cuda or not args.time_budget or epoch % 25 == 0 or progress() >= 1:  # GPU epochs take ~1 s
            save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                         "gen": g.get_state(), "epoch": epoch, "step": step, "best": best,
                         "history": history, "train_seconds": train_seconds}, ckpt_path)
    with open(os.path.join(args.out, "history.json"), "w") as f:
        json.dump(history, f)
    with open(os.path.join(args.out, "trained.json"), "w") as f:  # the whole run's, not the best epoch's
        json.dump({"epochs": len(history), "train_seconds": round(train_seconds)}, f)
    log("best epoch %d (val dice %.4f, auc %.4f), %.0f s of training" % (best["epoch"], best["dice"], best["auc_malignant"], train_seconds))
    best = {**best, "epochs_run": epoch}
    if args.compact_out:
        log("compact weights:", ", ".join(os.path.basename(p) for p in write_compact(args, best_path)))
    return best, train_seconds


def write_compact(args, best_path):
    os.makedirs(args.compact_out, exist_ok=True)
    name = os.path.basename(os.path.normpath(args.out))
    return save_compact(torch_load(best_path), os.path.join(args.compact_out, name + ".pt"))


class Ensemble(torch.nn.Module):
    """Members' logits averaged: one ONNX graph, one forward call in the gateway."""

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x):
        outs = [m(x) for m in self.members]
        self.last_class_logits = [o[1] for o in outs]  # for ClassSpread (training/spread.py), same pass
        return (sum(o[0] for o in outs) / len(outs), sum(o[1] for o in outs) / len(outs))


def load_members(paths):
    """Weights to one network, or several to an Ensemble; 'weights.pt@128' is a network trained at
    128 x 128, resized to and from it in the graph (training/resized.py)."""
    members = []
    for p in paths:
        path, n = split_size(p)
        state = load_state(path)
        net = network_for(state)
        net.load_state_dict(state)
        members.append((Resized(net, n) if n else net).eval())
    return members[0] if len(members) == 1 else Ensemble(members).eval()


def finish(net, args, spec, data, info, log, paths):
    """Val decisions (TTA, threshold, P(normal) bound), test once at original resolution, export."""
    final, tta = net, False
    plain, _, _ = evaluate_small(net, *data["val"][:3], spec)
    log("val (exported weights): %s" % json.dumps(plain))
    if args.tta != "off":
        flip, _, _ = evaluate_small(FlipTTA(net), *data["val"][:3], spec)
        log("val without TTA: dice %.4f auc %.4f | with flip TTA: dice %.4f auc %.4f"
            % (plain["dice"], plain["auc_malignant"], flip["dice"], flip["auc_malignant"]))
        # TTA doubles inference time: keep it only for a real gain on val
        if args.tta == "on" or flip["dice"] + flip["auc_malignant"] > plain["dice"] + plain["auc_malignant"] + TTA_MIN_GAIN:
            final, tta = FlipTTA(net).eval(), True
    log("test-time augmentation:", "horizontal flip (in the ONNX graph)" if tta else "none")

    val, vprob, vcp = evaluate_small(final, *data["val"][:3], spec)
    vm, vl = data["val"][1], data["val"][2]
    sweep = {}
    for t in [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]:
        sweep[t] = float(np.mean([dice_iou(vprob[i] > t, vm[i] > 0)[0] for i in np.where(vl > 0)[0]]))
    threshold = max(sweep, key=sweep.get)
    log("val threshold sweep:", json.dumps(sweep), "-> threshold", threshold)
    if args.descriptor_head:
        # the masks stay as they are (so does the threshold); the class scores change
        final, info = with_descriptor_head(final, args, data, threshold, info, log)
        val, _, vcp = evaluate_small(final, *data["val"][:3], spec)
        log("val with the descriptor head: %s" % json.dumps(val))
    if args.class_temperature:
        final, info, vcp = with_temperature(final, args, vcp, vl, info, log)
        val = {**val, **class_metrics(vl, vcp)}  # the masks are unchanged: no second val pass
        log("val with the class temperature: %s" % json.dumps(val))
    scored = final  # what the scorers call: the exported graph's first two outputs
    if args.most_suspicious_when_disagreeing and args.low_agreement_above is None:
        raise SystemExit("--most-suspicious-when-disagreeing needs --low-agreement-above")
    if args.low_agreement_above is not None:
        if len(paths) < 2 or tta:
            raise SystemExit("--low-agreement-above needs an ensemble (several --checkpoints) and no flip TTA")
        from spread import ClassSpread, FirstTwo
        rule = args.low_agreement_above if args.most_suspicious_when_disagreeing else None
        final = ClassSpread(final, net, info.get("class_temperature", 1.0), rule).eval()
        scored = FirstTwo(final).eval()
        if rule is not None:
            # the class scores change where the networks disagree (the masks do not): score val again
            val, _, vcp = evaluate_small(scored, *data["val"][:3], spec)
            log("val with the most suspicious network's class where the networks disagree: %s" % json.dumps(val))
    outlined = (vprob > threshold).reshape(len(vprob), -1).any(1)
    p_normal = vcp[:, CLASSES.index("normal")]
    bound = choose_normal_bound(outlined, p_normal, vl > 0)
    still = [bool(o) and not suppressed(p, bound) for o, p in zip(outlined[vl == 0], p_normal[vl == 0])]
    log("val P(normal) bound: %s (normal val images outlined: %d of %d without it, %d with it)"
        % (bound, int(outlined[vl == 0].sum()), len(still), sum(still)))

    test = evaluate_full(scored, args.data, spec, threshold, "test", bound)
    log("test (original resolution):", json.dumps(test))
    members = paths if len(paths) > 1 else None
    export(final, args, spec, threshold, {**info, **val, "dice": sweep[threshold]}, test, log, tta, members, bound)


def with_descriptor_head(net, args, data, threshold, info, log):
    """net wrapped in DescriptorFusion: --descriptor-head fit fits the regression here (train, val at
    --val-zooms; training/descriptor_head.py) and writes <out>/fusion.json; a path reads such a file."""
    if args.descriptor_head == "fit":
        from descriptor_head import fit_head  # it imports this module
        params, report = fit_head(net, data, threshold, DESCRIPTOR_COPIES, args.zoom_range, args.val_zooms, args.seed, log)
        with open(os.path.join(args.out, "fusion.json"), "w") as f:
            json.dump(params, f, indent=1)
        with open(os.path.join(args.out, "descriptor-search.json"), "w") as f:
            json.dump(report, f, indent=1)
    else:
        params = json.load(open(args.descriptor_head))
        if abs(params["threshold"] - threshold) > 1e-6:
            log("note: the descriptors were fitted at mask threshold %g, the model's is %g" % (params["threshold"], threshold))
    log("class logits: + %g x the lesion-descriptor log-odds (%s)" % (params["weight"], args.descriptor_head))
    info = {**info, "descriptor_head": {"weight": params["weight"], "lambda": params["lambda"], "names": params["names"]}}
    return DescriptorFusion(net, params).eval(), info


def with_temperature(net, args, vcp, vl, info, log):
    """net with its class logits divided by T: T from --class-temperature, or fitted on the val
    softmax probabilities vcp (their logs are the logits up to a constant per image). Also returns
    the val probabilities the tempered net gives."""
    logp = np.log(np.clip(vcp, 1e-12, 1))
    t = fit_temperature(logp, vl) if args.class_temperature == "fit" else float(args.class_temperature)
    log("class temperature %g (%s): val log-loss %.4f -> %.4f" % (t, args.class_temperature, log_loss(logp, vl, 1), log_loss(logp, vl, t)))
    return Tempered(net, t).eval(), {**info, "class_temperature": t}, tempered(vcp, t)


@torch.no_grad()
def evaluate_full(model, data_dir, spec, threshold, split, normal_bound=None):
    """Scores at each image's own resolution: logits upsampled bilinearly, then thresholded; no
    outline where P(normal) is above normal_bound (as the gateway does)."""
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
        if suppressed(probs[-1][CLASSES.index("normal")], normal_bound):
            pred = np.zeros_like(pred)
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
DESCRIPTOR_COPIES = 4  # augmented copies of the train images whose descriptors the regression also sees


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


def export(model, args, spec, threshold, best, test, log, tta=False, members=None, normal_bound=None):
    import hashlib
    os.makedirs(args.model_dir, exist_ok=True)
    name = "attention-unet-busi"
    onnx_path = os.path.join(args.model_dir, name + ".onnx")
    dummy = torch.zeros(1, 1, args.size, args.size)
    spread = args.low_agreement_above is not None
    outputs = ["mask_logits", "class_logits"] + (["class_spread"] if spread else [])
    torch.onnx.export(model, dummy, onnx_path, input_names=["image"], output_names=outputs,
                      dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                      opset_version=13, do_constant_folding=True)
    sha = hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    training = {"data": "BUSI", "split": "split.csv", "epochs": best.get("epochs_run", args.epochs), "best_epoch": best.get("epoch"),
                "seed": args.seed, "base_filters": args.base, "batch": args.batch, "lr": args.lr,
                "test_time_augmentation": "hflip" if tta else "none",
                "train_seconds": best.get("train_seconds"), "torch": torch.__version__}
    if args.arch != "unet":
        training["architecture"] = args.arch
        if args.encoder_lr != 1.0:
            training["encoder_lr_share"] = args.encoder_lr
        if args.encoder_l2sp:
            training["encoder_l2sp"] = args.encoder_l2sp
    if args.time_budget:
        training["time_budget_seconds"] = args.time_budget
    if tuple(args.zoom_range) != DEFAULT_ZOOM:
        training["zoom_range"] = list(args.zoom_range)
    if args.val_zooms != [1.0]:
        training["val_zooms"] = args.val_zooms
    if args.dice != "batch":
        training["dice_loss"] = args.dice
    if args.normal_penalty:
        training["normal_penalty"] = args.normal_penalty
    if args.class_weight != 0.5:
        training["class_weight"] = args.class_weight
    if args.class_detach_at is not None:
        training["class_detach_at"] = args.class_detach_at
    if args.class_mixup:
        training["class_mixup"] = args.class_mixup
    if args.low_size:
        training["progressive_resizing"] = {"size": args.low_size, "share": args.low_share,
                                            **({"average_reset_at_switch": True} if args.reset_average_at_switch else {})}
    if members:
        # the path under the repository (several runs name their weights best.pt)
        training["ensemble"] = [os.path.relpath(os.path.abspath(p), ROOT) for p in members]
    if "class_temperature" in best:
        training["class_temperature"] = best["class_temperature"]
    if "descriptor_head" in best:
        training["descriptor_head"] = best["descriptor_head"]
    if args.facts:
        training.update(json.load(open(args.facts)))
    mask = {"name": "mask_logits", "activation": "sigmoid", "threshold": threshold}
    if normal_bound is not None:
        mask["suppressWhenNormalAbove"] = normal_bound  # beyond SPEC (README: "Where we deviate from SPEC.md")
    meta = {
        "name": name, "version": args.model_version or "dev-" + sha[:8], "file": name + ".onnx", "sha256": sha,
        "input": {"name": "image", **spec},
        "outputs": {"mask": mask,
                    "class": {"name": "class_logits", "activation": "softmax", "labels": CLASSES}},
        "training": training,
        "metrics": {"val": {k: best[k] for k in ("dice", "auc_malignant", "f1_malignant")},
                    "test": {k: test[k] for k in ("dice", "iou", "auc_malignant", "f1_malignant", "normal_with_false_lesion")},
                    "test_scorer": "training/train.py (python)"},
    }
    if spread:
        # beyond SPEC (README: "Where we deviate from SPEC.md")
        meta["outputs"]["spread"] = {"name": "class_spread", "label": "malignant", "lowAgreementAbove": args.low_agreement_above}
        if args.most_suspicious_when_disagreeing:
            meta["outputs"]["spread"]["classFromMostSuspiciousNetwork"] = True
    with open(os.path.join(args.model_dir, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    write_reference(model, args.size, os.path.join(args.model_dir, "reference-outputs.json"))
    torch.save(model.state_dict(), os.path.join(args.out, "final.pt"))
    log("exported", onnx_path, sha)


if __name__ == "__main__":
    main()
