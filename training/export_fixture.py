#!/usr/bin/python3
"""Writes the small UNTRAINED test fixture model (test/fixtures/tiny-model/): same architecture
at base 4 and 64×64 input, random weights. Never shipped under model/; its outputs mean nothing.
  /usr/bin/python3 training/export_fixture.py
"""
import hashlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import AttentionUNet  # noqa: E402
from reference import write_reference  # noqa: E402

out = os.path.join(os.path.dirname(HERE), "test", "fixtures", "tiny-model")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
m = AttentionUNet(base=4).eval()
# give BatchNorm non-trivial statistics so parity covers them
with torch.no_grad():
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
size = 64
onnx = os.path.join(out, "tiny-attention-unet.onnx")
torch.onnx.export(m, torch.zeros(1, 1, size, size), onnx, input_names=["image"], output_names=["mask_logits", "class_logits"],
                  dynamic_axes={"image": {0: "batch"}, "mask_logits": {0: "batch"}, "class_logits": {0: "batch"}}, opset_version=13)
meta = {"name": "tiny-untrained-fixture", "version": "0.0.1", "file": "tiny-attention-unet.onnx",
        "sha256": hashlib.sha256(open(onnx, "rb").read()).hexdigest(),
        "input": {"name": "image", "size": [size, size], "channels": 1, "layout": "NCHW", "resize": "stretch",
                  "scale": 1 / 255, "mean": 0.0, "std": 1.0},
        "outputs": {"mask": {"name": "mask_logits", "activation": "sigmoid", "threshold": 0.5},
                    "class": {"name": "class_logits", "activation": "softmax", "labels": ["normal", "benign", "malignant"]}},
        "training": {"note": "untrained test fixture"}}
json.dump(meta, open(os.path.join(out, "model.json"), "w"), indent=2)
write_reference(m, size, os.path.join(out, "reference-outputs.json"))
print("wrote", out)


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


dark_out = os.path.join(os.path.dirname(HERE), "test", "fixtures", "dark-lesion-model")
os.makedirs(dark_out, exist_ok=True)
dark_onnx = os.path.join(dark_out, "dark-lesion.onnx")
dark_meta = dict(meta, name="dark-lesion-fixture", version="0.0.1", file="dark-lesion.onnx",
                 input=dict(meta["input"], size=[128, 128]),
                 training={"note": "deterministic test fixture, not a model"})
torch.onnx.export(DarkRegionNet(), torch.zeros(1, 1, 128, 128), dark_onnx, input_names=["image"],
                  output_names=["mask_logits", "class_logits"],
                  dynamic_axes={"image": {0: "batch"}, "mask_logits": {0: "batch"}, "class_logits": {0: "batch"}}, opset_version=13)
dark_meta["sha256"] = hashlib.sha256(open(dark_onnx, "rb").read()).hexdigest()
json.dump(dark_meta, open(os.path.join(dark_out, "model.json"), "w"), indent=2)
print("wrote", dark_out)
