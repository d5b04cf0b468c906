"""A zoomed second view for frames where the ensemble outlines little or nothing (rule 6 in the
model/EXPERIMENTS.md).

A network trained at 128 x 128 and fed the 256 x 256 input itself sees the picture at twice the
scale it learnt, so a lesion shown at half size (a scanner set to a greater depth) looks the size
it was trained on. gate_logits combines the base ensemble's and such a zoom view's mask logits:
where the base outlines less than a share `area_below` of the frame (hard area at `threshold`),
they move a share `weight` of the way towards the zoom view's. Plain tensor operations, so it
would export to ONNX inside one graph; rule 6 failed on val (model/EXPERIMENTS.md), so no export uses it and
training/zoom_search.py is its only caller.
"""
import math

import torch


def gate_logits(base, zoom, threshold, area_below, weight):
    """base, zoom: N x 1 x H x W mask logits. Returns the gated mask logits (N x 1 x H x W)."""
    outlined = (base > math.log(threshold / (1 - threshold))).float().mean(dim=(1, 2, 3), keepdim=True)
    use = (outlined < area_below).float()
    return base + use * weight * (zoom - base)
