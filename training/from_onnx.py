#!/usr/bin/python3
"""Rebuild the shipped model's PyTorch weights from its ONNX file, so that a fresh checkout (which
has model/ but none of the ignored training/runs/) can train on from the shipped networks, score
them with tta_search.py, refit their descriptor regression or export them again.

  /usr/bin/python3 training/from_onnx.py [--model model/model.json] [--out training/runs/shipped]

Writes <out>/member<K>.pt (one state dict per averaged network, loadable by train.py's
load_members, so `train.py --export-only --checkpoints <out>/member0.pt,<out>/member1.pt` and
`tta_search.py a=<out>/member0.pt ...` take them) and, where the graph carries the lesion-descriptor
regression, <out>/fusion.json (for `train.py --descriptor-head`). A member trained at another input
size (model.json's ensemble names it weights.pt@128; training/resized.py) is written as trained and
is taken back as <out>/member<K>.pt@128. Before writing, it rebuilds the
whole graph (members averaged, flip TTA, descriptor branch and class temperature as model.json
says; export again with train.py --class-temperature <its value> to keep the last) and checks it
against model/reference-outputs.json; it exits 1, writing nothing, if any logit differs by more
than --tolerance.

The export folded each BatchNorm into the convolution before it, and the BatchNorm parameters are
not in the file. They come back as an exact identity in eval mode (scale sqrt(1 + eps), shift 0,
running mean 0, variance 1; the folded bias as the BatchNorm's shift). That is exact for inference,
but not for training on: in train mode a BatchNorm normalises by its batch's statistics, so every
layer is rescaled at the first step. --calibrate estimates each BatchNorm's statistics from
batches of augmented train images, as the training loop sees them, and sets running mean and
variance to them, the scale to sqrt(variance + eps) and the shift to mean + folded bias: eval-mode
outputs stay the same, and train-mode batches are normalised as they were when the network was
trained. Measured on the shipped member0 (val Dice 0.748 at threshold 0.5, no TTA): after one
epoch of train-mode passes over augmented train batches, no weight changed, only the running
statistics, val Dice is 0.144 without calibration, 0.726 calibrated on the images as they are
(--calibrate-copies 0) and 0.750 calibrated on augmented batches (the default).

The file is read with a small protobuf reader (no onnx package in Debian's python here).
"""
import argparse
import base64
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import AttentionUNet, MobileAttentionUNet  # noqa: E402
from reference import pattern  # noqa: E402
from resized import Resized, split_size  # noqa: E402

ROOT = os.path.dirname(HERE)


def _varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def _fields(b):
    """(field number, value) for each field of one protobuf message (bytes for length-delimited)."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        wire = key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
        yield key >> 3, v


def _packed(v):
    if isinstance(v, int):
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


FLOAT = 1  # TensorProto.DataType


def read_onnx(path):
    """The graph's float initializers {name: array} and its nodes [(op, inputs, outputs)] in order."""
    graph = next(v for f, v in _fields(open(path, "rb").read()) if f == 7)  # ModelProto.graph
    inits, nodes = {}, []
    for f, v in _fields(graph):
        if f == 5:  # GraphProto.initializer: TensorProto
            dims, dtype, name, raw, floats = [], None, None, None, []
            for ff, vv in _fields(v):
                if ff == 1:
                    dims += _packed(vv)
                elif ff == 2:
                    dtype = vv
                elif ff == 8:
                    name = vv.decode()
                elif ff == 9:
                    raw = vv
                elif ff == 4:  # float_data, packed or not
                    floats.append(np.frombuffer(vv, "<f4"))
            if dtype != FLOAT:
                continue
            a = np.frombuffer(raw, "<f4") if raw is not None else np.concatenate(floats) if floats else np.zeros(0, "<f4")
            inits[name] = a.reshape(dims).astype(np.float32)
        elif f == 1:  # GraphProto.node: NodeProto
            ins, outs, op = [], [], None
            for ff, vv in _fields(v):
                if ff == 1:
                    ins.append(vv.decode())
                elif ff == 2:
                    outs.append(vv.decode())
                elif ff == 4:
                    op = vv.decode()
            nodes.append((op, ins, outs))
    return inits, nodes


def folded_pairs(net):
    """(conv, batchnorm) in the order the forward pass runs them (= the order they are registered)."""
    mods = list(net.modules())
    pairs = []
    for a, b in zip(mods, mods[1:]):
        if isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d):
            pairs.append((a, b))
    return pairs


def member_prefixes(k, n_members):
    # a member trained at another size sits inside a Resized wrapper (training/resized.py)
    return ("members.%d." % k, "members.%d.net." % k) if n_members > 1 else ("",)


def network_of(inits, k, n_members):
    """Member k's architecture, read from the width of its class head: 2 x (1280 + 128) inputs for
    MobileAttentionUNet, 2 x (16 + 8) x base for an AttentionUNet of that base."""
    key = next((n for n in inits for prefix in member_prefixes(k, n_members) if n.endswith(prefix + "cls.1.weight")), None)
    if key is None:
        raise SystemExit("the graph has no class head for member %d" % k)
    width = inits[key].shape[1]
    return MobileAttentionUNet() if width == 2 * (1280 + 128) else AttentionUNet(width // 48)


def describe(net):
    return "MobileNetV2 encoder" if isinstance(net, MobileAttentionUNet) else "base %d" % net.head.weight.shape[1]


def rebuild(inits, nodes, n_members):
    """The graph's n_members networks with its weights (BatchNorm as an identity, see above)."""
    alias = {}  # Identity outputs that stand for initializers (the export's shared weights)
    for op, ins, outs in nodes:
        if op == "Identity" and ins and ins[0] in inits:
            alias[outs[0]] = ins[0]
    folded, seen = [], set()
    for op, ins, outs in nodes:
        if op != "Conv" or len(ins) < 3:
            continue
        w, b = alias.get(ins[1], ins[1]), alias.get(ins[2], ins[2])
        if w in inits and b in inits and not w.endswith("head.weight") and w not in seen:
            seen.add(w)
            folded.append((inits[w], inits[b]))
    nets = [network_of(inits, k, n_members).eval() for k in range(n_members)]
    pairs = [p for net in nets for p in folded_pairs(net)]
    if len(pairs) != len(folded):
        raise SystemExit("the graph has %d folded convolutions, its %d networks (%s) need %d"
                         % (len(folded), n_members, ", ".join(describe(n) for n in nets), len(pairs)))
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, folded):
            if tuple(conv.weight.shape) != w.shape:
                raise SystemExit("shape mismatch: %s in the graph, %s in the network" % (w.shape, tuple(conv.weight.shape)))
            conv.weight.copy_(torch.from_numpy(w))
            if conv.bias is not None:
                conv.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
            bn.bias.copy_(torch.from_numpy(b))
        for k, net in enumerate(nets):
            prefixes = member_prefixes(k, n_members)
            for name in ("head.weight", "head.bias", "cls.1.weight", "cls.1.bias"):
                key = next((n for n in inits for prefix in prefixes if n.endswith(prefix + name)), None)
                if key is None:
                    raise SystemExit("the graph has no initializer for %s%s" % (prefixes[0], name))
                net.state_dict()[name].copy_(torch.from_numpy(inits[key]))
    return nets


def fusion_params(inits, meta):
    """The descriptor regression as descriptor_head.py writes it, or None if the graph has none."""
    head = meta.get("training", {}).get("descriptor_head")
    if not head or head.get("weight", 0) == 0 or "coef" not in inits:
        return None
    return {"names": head["names"], "threshold": meta["outputs"]["mask"]["threshold"],
            "mean": inits["mean"].tolist(), "std": inits["std"].tolist(), "coef": inits["coef"].tolist(),
            "intercept": float(inits["intercept"]), "weight": head["weight"], "lambda": head.get("lambda")}


def member_sizes(meta):
    """Each member's own input size where it differs from the graph's ('weights.pt@128'), else None."""
    return [split_size(p)[1] for p in meta["training"].get("ensemble") or []] or [None]


def as_fed(nets, meta):
    """The networks as the graph feeds them: a member trained at another size inside Resized."""
    return [Resized(net, n) if n else net for net, n in zip(nets, member_sizes(meta))]


def whole_graph(nets, meta, fusion):
    from descriptors import DescriptorFusion
    from train import Ensemble, FlipTTA
    nets = as_fed(nets, meta)
    net = nets[0] if len(nets) == 1 else Ensemble(nets)
    if meta["training"].get("test_time_augmentation") == "hflip":
        net = FlipTTA(net)
    if fusion:
        net = DescriptorFusion(net, fusion)
    if meta["training"].get("class_temperature"):
        from temperature import Tempered
        net = Tempered(net, meta["training"]["class_temperature"])
    return net.eval()


@torch.no_grad()
def check(net, reference_path):
    """Largest absolute difference between the rebuilt graph and the exported reference outputs."""
    ref = json.load(open(reference_path))
    x = torch.from_numpy(pattern(ref["n"], ref["size"], ref["size"]))
    mask, cls = net(x)
    diffs = {}
    for name, got in (("mask_logits", mask), ("class_logits", cls)):
        want = np.frombuffer(base64.b64decode(ref[name]), "<f4").reshape(got.shape)
        diffs[name] = float(np.abs(got.numpy() - want).max())
    return diffs


@torch.no_grad()
def calibrate(nets, data_dir, cache_dir, spec, copies, batch=16, seed=0):
    """BatchNorm statistics from the BUSI train images (see above); eval-mode outputs unchanged.
    copies > 0: batches of augmented train images, as the training loop sees them (train.py's
    augmentation at its default scale range), each statistic the mean over the batches (what the
    running averages of training estimate); copies = 0: the images as they are, in one population."""
    from augment import DEFAULT_ZOOM, augment
    from data import load_arrays
    train_images, train_masks = load_arrays(data_dir, spec["size"][0], cache_dir)["train"][:2]
    images = torch.from_numpy(((train_images * spec["scale"] - spec["mean"]) / spec["std"])[:, None].astype(np.float32))
    masks = torch.from_numpy(train_masks[:, None].astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    if copies == 0:
        batches = [images[i:i + batch] for i in range(0, len(images), batch)]
    else:
        batches = []
        for _ in range(copies):
            o = torch.randperm(len(images), generator=g)
            batches += [augment(images[o[i:i + batch]], masks[o[i:i + batch]], g, DEFAULT_ZOOM)[0]
                        for i in range(0, len(o), batch)]
    for net in nets:
        stats = {}
        hooks = []
        for conv, bn in folded_pairs(net):
            def hook(module, inp, out, bn=bn):
                y = inp[0]
                s = stats.setdefault(bn, [0, 0.0, 0.0])
                if copies:  # per batch: mean and (biased) variance, averaged over batches
                    var, mu = (v.double() for v in torch.var_mean(y, dim=(0, 2, 3), unbiased=False))
                    s[0] += 1
                    s[1] += mu
                    s[2] += var + mu * mu
                else:  # one population
                    y = y.double()
                    s[0] += y.shape[0] * y.shape[2] * y.shape[3]
                    s[1] += y.sum(dim=(0, 2, 3))
                    s[2] += (y * y).sum(dim=(0, 2, 3))
            hooks.append(bn.register_forward_hook(hook))
        for x in batches:
            net(x)
        for h in hooks:
            h.remove()
        for bn, (n, s1, s2) in stats.items():
            # the BatchNorm's input is conv(x) = y; eval output: sqrt(var+eps) (y - mu) / sqrt(var+eps) + mu + b = y + b
            mu = s1 / n
            var = (s2 / n - mu * mu).clamp_min(1e-8)
            shift = bn.bias.double() - bn.running_mean.double()  # b, also when calibrated before
            bn.running_mean.copy_(mu.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.copy_((mu + shift).float())
    return len(images), sum(len(x) for x in batches)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(ROOT, "model", "model.json"))
    p.add_argument("--reference", help="reference outputs to check against (default: reference-outputs.json beside --model)")
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "shipped"))
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--calibrate", action="store_true", help="re-estimate BatchNorm statistics on the BUSI train images (for training on)")
    p.add_argument("--calibrate-copies", type=int, default=2, help="augmented passes over train for --calibrate (0: the images as they are)")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "datasets", "busi"))
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "training", "cache"), help="where the resized arrays are cached")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    meta = json.load(open(args.model))
    model_dir = os.path.dirname(os.path.abspath(args.model))
    inits, nodes = read_onnx(os.path.join(model_dir, meta["file"]))
    if meta["training"].get("class_temperature"):
        # the temperature wraps the whole graph (training/temperature.py): its names gain a "net." prefix
        inits = {k[4:] if k.startswith("net.") else k: v for k, v in inits.items()}
    n_members = max(1, len(meta["training"].get("ensemble") or []))
    nets = rebuild(inits, nodes, n_members)
    fusion = fusion_params(inits, meta)
    reference = args.reference or os.path.join(model_dir, "reference-outputs.json")

    def differs(what):
        """Prints the largest differences from the reference outputs; True if above the tolerance."""
        diffs = check(whole_graph(nets, meta, fusion), reference)
        print("%s; largest difference from the reference outputs: mask %.2e, class %.2e" % (what, diffs["mask_logits"], diffs["class_logits"]))
        return max(diffs.values()) > args.tolerance

    if differs("rebuilt %d network(s)%s" % (n_members, " with the descriptor regression" if fusion else "")):
        print("error: the rebuilt networks do not reproduce %s (tolerance %g)" % (meta["file"], args.tolerance), file=sys.stderr)
        return 1
    if args.calibrate:
        n, seen = calibrate(as_fed(nets, meta), args.data, args.cache_dir, meta["input"], args.calibrate_copies)
        if differs("BatchNorm statistics from %d train images (%d views%s)" % (n, seen, ", augmented" if args.calibrate_copies else "")):
            print("error: calibration changed the outputs", file=sys.stderr)
            return 1
    os.makedirs(args.out, exist_ok=True)
    for k, net in enumerate(nets):
        torch.save(net.state_dict(), os.path.join(args.out, "member%d.pt" % k))
    if fusion:
        with open(os.path.join(args.out, "fusion.json"), "w") as f:
            json.dump(fusion, f, indent=1)
    print("wrote", ", ".join(["member%d.pt" % k + ("@%d" % n if n else "") for k, n in enumerate(member_sizes(meta))] + (["fusion.json"] if fusion else [])), "to", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
