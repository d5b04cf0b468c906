"""Batch augmentation for ultrasound, on tensors (N x 1 x H x W, 0..1 images, 0/1 masks).

Geometry: horizontal flip, scale, aspect, small rotation and shift (no vertical flip: the
skin line is always at the top). Appearance: gain, gamma, contrast, speckle (multiplicative
noise, smoothed), blur, and a depth-dependent gain ramp (time-gain compensation differs by
scanner and operator).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def _u(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


# the content's scale range the shipped weights were trained with (train.py --zoom-range)
DEFAULT_ZOOM = (0.8, 1.25)


def zoom_about_centre(a, factor, mode):
    """a: N x H x W array; the content scaled by factor about the centre, the frame size kept
    (below 1: smaller, padded with black, as a scanner at a greater depth shows it; above 1: cropped)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]
    n, _, h, w = t.shape
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], dtype=torch.float32).expand(n, 2, 3)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    return F.grid_sample(t, grid, mode=mode, padding_mode="zeros", align_corners=False)[:, 0].numpy()


def zoom_images_and_masks(images, masks, factor):
    """Images (bilinear) and their 0/1 masks (nearest, kept 0/1) scaled alike about the centre;
    factor 1 returns them as they are."""
    if factor == 1.0:
        return images, masks
    return (zoom_about_centre(images, factor, "bilinear"),
            (zoom_about_centre(masks, factor, "nearest") > 0.5).astype(np.uint8))


def augment(x, m, g, zoom=DEFAULT_ZOOM):
    """zoom: range of the content's scale (below 1 the picture shrinks, as at a greater depth)."""
    n, _, h, w = x.shape
    dev = g.device
    flip = torch.where(torch.rand(n, generator=g, device=dev) < 0.5, -1.0, 1.0)
    s = _u(n, zoom[0], zoom[1], g)
    aspect = torch.exp(_u(n, -0.15, 0.15, g))
    rot = _u(n, -12, 12, g) * math.pi / 180
    tx, ty = _u(n, -0.1, 0.1, g), _u(n, -0.1, 0.1, g)
    sx, sy = flip / (s * aspect), 1.0 / (s / aspect)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sx * torch.cos(rot)
    theta[:, 0, 1] = -torch.sin(rot) * sy
    theta[:, 1, 0] = torch.sin(rot) * sx
    theta[:, 1, 1] = sy * torch.cos(rot)
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = (F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).float()

    # appearance
    gain = _u(n, 0.6, 1.4, g).view(n, 1, 1, 1)
    gamma = torch.exp(_u(n, -0.4, 0.4, g)).view(n, 1, 1, 1)
    x = (x.clamp(0, 1) ** gamma) * gain
    ramp = torch.linspace(0, 1, h, device=dev).view(1, 1, h, 1)
    tgc = _u(n, -0.3, 0.3, g).view(n, 1, 1, 1)
    x = x * (1 + tgc * (ramp - 0.5))
    # speckle: multiplicative noise, lightly smoothed so it has a grain size
    sigma = _u(n, 0.0, 0.25, g).view(n, 1, 1, 1)
    noise = torch.randn(n, 1, h, w, generator=g, device=dev)
    noise = F.avg_pool2d(noise, 3, stride=1, padding=1) * 3
    x = x * (1 + sigma * noise)
    # blur some images (lower-resolution probes)
    blur = (torch.rand(n, generator=g, device=dev) < 0.25).view(n, 1, 1, 1).float()
    x = blur * F.avg_pool2d(x, 3, stride=1, padding=1) + (1 - blur) * x
    return x.clamp(0, 1), m
