"""The exact image -> tensor preprocessing of model.json, shared by training and export.

The gateway (src/inference/preprocess.ts) implements the same arithmetic; the parity test
compares the two on sample images.

resize "stretch": separable triangle (bilinear) filter with half-pixel centres whose support
grows with the downscale factor (antialiased, as PIL's BILINEAR), computed in float64 with
no intermediate rounding. Then (pixel * scale - mean) / std.
"""
import numpy as np
from PIL import Image


def gray_from_file(path):
    """8-bit grayscale as the gateway makes it: ITU-R BT.601 luma, PIL 'L' conversion."""
    im = Image.open(path)
    if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
    if im.mode == "RGB":
        im = im.convert("L")
    return np.asarray(im, dtype=np.uint8)


def _weights(in_size, out_size):
    scale = in_size / out_size
    support = max(scale, 1.0)
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(np.floor(center - support)), 0)
        hi = min(int(np.ceil(center + support)), in_size)
        j = np.arange(lo, hi)
        t = 1.0 - np.abs((j + 0.5 - center) / support)
        t = np.clip(t, 0.0, None)
        s = t.sum()
        if s > 0:
            w[i, lo:hi] = t / s
    return w


def resize(img, out_h, out_w):
    """Antialiased bilinear resize of a 2-D array to (out_h, out_w), float64 out."""
    a = img.astype(np.float64)
    wy = _weights(a.shape[0], out_h)
    wx = _weights(a.shape[1], out_w)
    return wy @ a @ wx.T


def to_input(gray, spec):
    h, w = spec["size"]
    if spec.get("resize", "stretch") != "stretch":
        raise ValueError("only stretch resize is implemented")
    r = resize(gray, h, w)
    return ((r * spec["scale"] - spec["mean"]) / spec["std"]).astype(np.float32)
