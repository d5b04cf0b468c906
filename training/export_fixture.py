#!/usr/bin/python3
"""Writes the test fixture models under test/fixtures/. Never shipped under model/.
  - tiny-model: the UNTRAINED Attention U-Net at base 4 and 64×64 input, random weights; its
    outputs mean nothing (the parity tests run it);
  - dark-lesion-model: a deterministic stand-in that outlines dark, smooth areas (DarkRegionNet);
  - dark-lesion-spread-model: the same with a third output, class_spread, as model 1.8.1 and later
    have (training/spread.py): 0.2 where a dark area is found (above its cut: "the networks
    disagree"), 0.01 elsewhere.
  /usr/bin/python3 training/export_fixture.py [--only tiny|dark|dark-spread]
"""
import argparse
import hashlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import AttentionUNet  # noqa: E402
from reference import write_reference  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(HERE), "test", "fixtures")
META = {"input": {"name": "image", "size": [64, 64], "channels": 1, "layout": "NCHW", "resize": "stretch",
                  "scale": 1 / 255, "mean": 0.0, "std": 1.0},
        "outputs": {"mask": {"name": "mask_logits", "activation": "sigmoid", "threshold": 0.5},
                    "class": {"name": "class_logits", "activation": "softmax", "labels": ["normal", "benign", "malignant"]}}}


def export(net, folder, onnx_name, meta, size, outputs=("mask_logits", "class_logits")):
    """net to <folder>/<onnx_name> and its model.json (sha256 filled in); returns the folder."""
    out = os.path.join(FIXTURES, folder)
    os.makedirs(out, exist_ok=True)
    onnx = os.path.join(out, onnx_name)
    torch.onnx.export(net, torch.zeros(1, 1, size, size), onnx, input_names=["image"], output_names=list(outputs),
                      dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}, opset_version=13)
    meta = dict(meta, file=onnx_name, sha256=hashlib.sha256(open(onnx, "rb").read()).hexdigest())
    json.dump(meta, open(os.path.join(out, "model.json"), "w"), indent=2)
    print("wrote", out)
    return out


def tiny():
    torch.manual_seed(0)
    m = AttentionUNet(base=4).eval()
    # give BatchNorm non-trivial statistics so parity covers them
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    meta = dict(META, name="tiny-untrained-fixture", version="0.0.1", training={"note": "untrained test fixture"})
    out = export(m, "tiny-model", "tiny-attention-unet.onnx", meta, 64)
    write_reference(m, 64, os.path.join(out, "reference-outputs.json"))


class DarkRegionNet(torch.nn.Module):
    """Deterministic stand-in used only by integration tests: marks dark, smooth areas (the
    phantom's hypoechoic 'lesion') as lesion, and calls an image with such an area benign.
    It exercises the whole gateway path with a predictable result; it is not a model."""

    def forward(self, x):
        smooth = torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=False)
        mask = 40.0 * (0.2 - smooth)
        frac = (smooth < 0.2).float().mean(dim=(1, 2, 3))
        cls = torch.stack([1.0 - 40 * frac, 0.5 + 40 * frac, 0.2 + 10 * frac], dim=1)
        return mask, cls


class DarkRegionSpreadNet(DarkRegionNet):
    """DarkRegionNet with a class_spread output: 0.2 once a dark area covers 2.5 % of the picture,
    0.01 without one (linear between)."""

    def forward(self, x):
        mask, cls = super().forward(x)
        frac = (torch.nn.functional.avg_pool2d(x, 9, stride=1, padding=4, count_include_pad=False) < 0.2).float().mean(dim=(1, 2, 3))
        return mask, cls, 0.01 + 0.19 * torch.clamp(40 * frac, 0, 1)


DARK = dict(META, version="0.0.1", input=dict(META["input"], size=[128, 128]), training={"note": "deterministic test fixture, not a model"})


def dark():
    export(DarkRegionNet(), "dark-lesion-model", "dark-lesion.onnx", dict(DARK, name="dark-lesion-fixture"), 128)


def dark_spread():
    outputs = dict(DARK["outputs"], spread={"name": "class_spread", "label": "malignant", "lowAgreementAbove": 0.0667})
    export(DarkRegionSpreadNet(), "dark-lesion-spread-model", "dark-lesion-spread.onnx",
           dict(DARK, name="dark-lesion-spread-fixture", outputs=outputs), 128, ("mask_logits", "class_logits", "class_spread"))


if __name__ == "__main__":
    writers = {"tiny": tiny, "dark": dark, "dark-spread": dark_spread}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=sorted(writers))
    args = p.parse_args()
    for name, write in writers.items():
        if args.only in (None, name):
            write()
