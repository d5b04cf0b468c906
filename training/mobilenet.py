"""MobileNetV2 (Sandler et al., 2018) as Keras builds it, to start an encoder from ImageNet weights.

The weights come from the nsfwjs npm package (training/pretrained/extract_nsfwjs.js): Keras'
ImageNet MobileNetV2 (alpha 1.0), stored there as uint8. The layout follows Keras exactly: batch
norm epsilon 1e-3, ReLU6, and stride-2 convolutions padded by one pixel on the bottom and right
only (Keras' correct_pad for even sizes), so the loaded network computes what Keras' did.
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# (expansion, output channels, repeats, first stride), Keras' MobileNetV2 table
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# encoder outputs used as skips: after these blocks the resolution halves next (/2, /4, /8, /16)
SKIP_BLOCKS = (0, 2, 5, 12)
SKIP_CHANNELS = (16, 24, 32, 96)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class PadConv(nn.Module):
    """Conv + BN (+ ReLU6); stride 2 pads (0, 1, 0, 1) first, as Keras' ZeroPadding2D(correct_pad)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, relu=True):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0 if stride == 2 else k // 2, groups=groups, bias=False)
        self.bn = bn(cout)
        self.relu = relu

    def forward(self, x):
        if self.stride == 2:
            x = F.pad(x, (0, 1, 0, 1))
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.relu else x


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        mid = cin * expansion
        self.expand = PadConv(cin, mid, 1) if expansion != 1 else None
        self.depthwise = PadConv(mid, mid, 3, stride, groups=mid)
        self.project = PadConv(mid, cout, 1, relu=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetV2Encoder(nn.Module):
    """forward(x) -> (skips at /2, /4, /8, /16; block 16's output at /32; Conv_1's 1280 at /32)."""

    def __init__(self, in_channels=1):
        super().__init__()
        self.stem = PadConv(in_channels, 32, 3, 2)
        blocks, cin = [], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.last = PadConv(320, 1280, 1)

    def forward(self, x):
        x = self.stem(x)
        skips = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in SKIP_BLOCKS:
                skips.append(x)
        return skips, x, self.last(x)


def keras_names():
    """Keras layer name of each PadConv, in the encoder's module order."""
    names = [("stem", "Conv1", "bn_Conv1")]
    for i in range(17):
        k = "expanded_conv" if i == 0 else "block_%d" % i
        if i:
            names.append(("blocks.%d.expand" % i, k + "_expand", k + "_expand_BN"))
        names.append(("blocks.%d.depthwise" % i, k + "_depthwise", k + "_depthwise_BN"))
        names.append(("blocks.%d.project" % i, k + "_project", k + "_project_BN"))
    names.append(("last", "Conv_1", "Conv_1_bn"))
    return names


def read_keras(prefix):
    """{Keras tensor name: float32 array} from extract_nsfwjs.js's <prefix>.json and .bin."""
    index = json.load(open(prefix + ".json"))
    data = np.fromfile(prefix + ".bin", dtype=np.float32)
    out = {}
    for t in index["tensors"]:
        n = int(np.prod(t["shape"]))
        out[t["name"]] = data[t["offset"] // 4: t["offset"] // 4 + n].reshape(t["shape"])
    return out


def load_imagenet(encoder, prefix):
    """Copies Keras' weights into the encoder; a one-channel stem gets the RGB kernels summed (a grey
    picture fed as R = G = B gives the same result). Returns the number of tensors loaded."""
    w = read_keras(prefix)
    state, loaded = encoder.state_dict(), 0
    for module, conv, norm in keras_names():
        if conv.endswith("_depthwise"):
            k = torch.from_numpy(w[conv + "/depthwise_kernel"]).permute(2, 3, 0, 1).reshape(-1, 1, 3, 3)
        else:
            k = torch.from_numpy(w[conv + "/kernel"]).permute(3, 2, 0, 1)
        if module == "stem" and state["stem.conv.weight"].shape[1] == 1:
            k = k.sum(dim=1, keepdim=True)
        state[module + ".conv.weight"] = k.contiguous()
        for ours, theirs in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                             ("running_var", "moving_variance")):
            state["%s.bn.%s" % (module, ours)] = torch.from_numpy(w["%s/%s" % (norm, theirs)].copy())
        loaded += 5
    encoder.load_state_dict(state)
    return loaded


def check(tfjs_json, prefix):
    """Largest differences between this port and TensorFlow.js running the package's own model
    (training/pretrained/check_tfjs.js) on the same synthetic picture: features, then outputs."""
    ref = json.load(open(tfjs_json))
    enc = MobileNetV2Encoder(3)
    load_imagenet(enc, prefix)
    enc.eval()
    y, x, c = np.meshgrid(np.arange(224), np.arange(224), np.arange(3), indexing="ij")
    picture = np.sin(x / 7 + c) * np.cos(y / 11 - c) * 0.8 + 0.1 * np.sin(x * y / 50)
    with torch.no_grad():
        _, _, f = enc(torch.from_numpy(picture.astype(np.float32)).permute(2, 0, 1)[None])
    w = read_keras(prefix)  # the package's dense head, only for this check
    h = np.maximum(f.mean(dim=(2, 3)).numpy()[0] @ w["dense_1/kernel"] + w["dense_1/bias"], 0)
    h = np.maximum(h @ w["dense_2/kernel"] + w["dense_2/bias"], 0)
    z = h @ w["dense_3/kernel"] + w["dense_3/bias"]
    p = np.exp(z - z.max())
    p /= p.sum()
    return (float(np.abs(f[0].permute(1, 2, 0).numpy().ravel() - np.array(ref["features"])).max()),
            float(np.abs(p - np.array(ref["outputs"])).max()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Compare this port with TensorFlow.js (training/pretrained/check_tfjs.js).")
    ap.add_argument("--check", required=True, help="check_tfjs.js's JSON output")
    ap.add_argument("--weights", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache", "mobilenet_v2_imagenet"))
    a = ap.parse_args()
    print("largest difference: features %.1e, outputs %.1e" % check(a.check, a.weights))
