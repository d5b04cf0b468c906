"""Descriptors of the predicted lesion, in the spirit of the BI-RADS ultrasound lexicon, computed
from the network's own mask and the image with plain tensor operations (so they export to ONNX):

  size      log area
  position  depth of the centroid
  shape     elongation (minor/major axis), fill of the moment ellipse, perimeter^2 / area
  orientation  log(height / width) ("taller than wide" is a malignant sign)
  echo pattern  mean and spread of the standardised intensity inside; contrast with a ring around it
  posterior features  intensity just below the lesion against the ring (shadowing vs enhancement)
  margin    image gradient along the outline; the mask's own uncertainty around it

They cannot memorise training images the way the class head's 768 pooled features can (train
malignant AUC 1.0 there, session 8). DescriptorFusion adds a logistic regression on them
(fitted by training/descriptor_head.py) to a network's class logits, inside the exported graph.

Input: x N x 1 x H x W (0..1, as the network gets it), p N x 1 x H x W mask probabilities.
Output: N x len(NAMES), and the lesion gate N (1 where the mask has at least MIN_AREA of the frame).
"""
import math

import torch
import torch.nn.functional as F

NAMES = ["log_area", "depth", "elongation", "fill", "log_compactness", "log_height_width",
         "inside_mean", "inside_spread", "contrast", "posterior", "edge_gradient", "edge_uncertainty"]
MIN_AREA = 0.001  # of the frame: about 65 pixels at 256 x 256
EPS = 1e-6


def _masked_mean(v, w):
    return (v * w).sum(dim=(1, 2, 3)) / (w.sum(dim=(1, 2, 3)) + EPS)


def _dilate(m, r):
    return F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)


def _shift_down(m, d):
    """m moved d rows towards the bottom of the frame (greater depth), zeros coming in at the top."""
    return F.pad(m, (0, 0, d, 0))[:, :, :m.shape[2], :]


def lesion_descriptors(x, p, threshold):
    # the frame size is fixed by model.json (constants in the exported graph); the batch is not
    h, w = int(x.shape[2]), int(x.shape[3])
    m = (p > threshold).to(x.dtype)
    area = m.sum(dim=(1, 2, 3))
    gate = (area >= MIN_AREA * h * w).to(x.dtype)
    # coordinates in frame units (0..1), rows = depth. Counted from the input rather than made with
    # arange: torch 1.13's ONNX export folded two equal-valued constants of different shapes into one
    # (the rows' coordinates became the columns' in onnxruntime; the parity tests now catch that)
    ys = (torch.cumsum(torch.ones_like(x[:1, :1, :, :1]), dim=2) - 0.5) / h
    xs = (torch.cumsum(torch.ones_like(x[:1, :1, :1, :]), dim=3) - 0.5) / w
    cy, cx = _masked_mean(ys.expand_as(m), m), _masked_mean(xs.expand_as(m), m)
    dy, dx = ys - cy[:, None, None, None], xs - cx[:, None, None, None]
    vyy, vxx, vxy = _masked_mean(dy * dy, m), _masked_mean(dx * dx, m), _masked_mean(dx * dy, m)
    half_tr = (vyy + vxx) / 2
    root = torch.sqrt(((vyy - vxx) / 2) ** 2 + vxy ** 2 + EPS * EPS)
    major, minor = half_tr + root, torch.clamp(half_tr - root, min=0.0)
    frac = area / (h * w)
    perimeter = (m[:, :, 1:, :] - m[:, :, :-1, :]).abs().sum(dim=(1, 2, 3)) + \
        (m[:, :, :, 1:] - m[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))

    # the image standardised per frame, as the network does
    mu = x.mean(dim=(2, 3), keepdim=True)
    z = (x - mu) / (x.std(dim=(2, 3), keepdim=True) + 1e-3)
    r = max(2, round(h / 32))
    ring = _dilate(m, r) * (1 - m)
    inside = _masked_mean(z, m)
    spread = torch.sqrt(_masked_mean((z - inside[:, None, None, None]) ** 2, m) + EPS)
    ring_mean = _masked_mean(z, ring)
    below = torch.clamp(_shift_down(m, r) + _shift_down(m, 2 * r), max=1.0) * (1 - m)
    zs = F.avg_pool2d(z, 3, stride=1, padding=1)
    gy = F.pad(zs[:, :, 2:, :] - zs[:, :, :-2, :], (0, 0, 1, 1)) / 2
    gx = F.pad(zs[:, :, :, 2:] - zs[:, :, :, :-2], (1, 1, 0, 0)) / 2
    grad = torch.sqrt(gx * gx + gy * gy + EPS)
    edge = _dilate(m, 1) - (1 - _dilate(1 - m, 1))

    feats = torch.stack([
        torch.log(frac + 1e-4),
        cy,
        torch.sqrt((minor + EPS) / (major + EPS)),
        torch.clamp(frac / (4 * math.pi * torch.sqrt(major * minor + EPS * EPS)), max=2.0),
        torch.log(perimeter * perimeter / (4 * math.pi * area + EPS) + 1.0),
        0.5 * torch.log((vyy + EPS) / (vxx + EPS)),
        inside,
        spread,
        inside - ring_mean,
        _masked_mean(z, below) - ring_mean,
        _masked_mean(grad, edge),
        _masked_mean(4 * p * (1 - p), _dilate(m, r)),
    ], dim=1)
    # no lesion: the descriptors mean nothing, so they are zero and the gate is off
    return feats * gate[:, None], gate


class DescriptorFusion(torch.nn.Module):
    """A network whose class logits get w * s added to malignant and taken from benign (half each),
    s being a logistic regression's malignant-vs-benign log-odds from the lesion descriptors (zero
    where no lesion is outlined). The mask logits pass through unchanged.
    params: {"threshold", "mean", "std", "coef", "intercept", "weight"} as descriptor_head.py writes them."""

    def __init__(self, net, params):
        super().__init__()
        self.net = net
        self.threshold = float(params["threshold"])
        self.weight = float(params["weight"])
        self.register_buffer("mean", torch.tensor(params["mean"], dtype=torch.float32))
        self.register_buffer("std", torch.tensor(params["std"], dtype=torch.float32))
        self.register_buffer("coef", torch.tensor(params["coef"], dtype=torch.float32))
        self.register_buffer("intercept", torch.tensor(float(params["intercept"])))
        self.register_buffer("direction", torch.tensor([0.0, -0.5, 0.5]))

    def log_odds(self, x, mask_logits):
        f, gate = lesion_descriptors(x, torch.sigmoid(mask_logits), self.threshold)
        return (((f - self.mean) / self.std) @ self.coef + self.intercept) * gate

    def forward(self, x):
        mask_logits, class_logits = self.net(x)
        s = self.log_odds(x, mask_logits)
        return mask_logits, class_logits + self.weight * s[:, None] * self.direction
