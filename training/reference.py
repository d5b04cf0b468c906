"""PyTorch reference outputs for the ONNX parity test (test/unit/onnx-parity.test.ts).

The input is a deterministic pattern that the TypeScript test regenerates with the same
formula, so no image data is committed. Images 0 and 1 are a texture; from image 2 on, a dark
ellipse lies on it (a lesion-like blob, so a model with a descriptor head (training/descriptors.py)
outlines something and its descriptor branch is compared too):
x[n, 0, i, j] = 0.5 + 0.4 * sin(0.11 * i + 0.07 * j + n) * cos(0.05 * j - 0.13 * i), times 0.15 where n >= 2 and ((i - 0.45 h) / (0.18 h))^2 + ((j - 0.5 w) / (0.25 w))^2 <= 1.
"""
import base64
import json

import numpy as np
import torch


def pattern(n, h, w):
    i = np.arange(h, dtype=np.float64)[:, None]
    j = np.arange(w, dtype=np.float64)[None, :]
    ellipse = ((i - 0.45 * h) / (0.18 * h)) ** 2 + ((j - 0.5 * w) / (0.25 * w)) ** 2 <= 1
    out = []
    for k in range(n):
        x = 0.5 + 0.4 * np.sin(0.11 * i + 0.07 * j + k) * np.cos(0.05 * j - 0.13 * i)
        out.append(np.where(ellipse, x * 0.15, x) if k >= 2 else x)
    return np.stack(out)[:, None].astype(np.float32)


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


@torch.no_grad()
def write_reference(model, size, path, n=3):
    model.eval()
    x = torch.from_numpy(pattern(n, size, size))
    outs = model(x)
    mask, cls = outs[:2]
    ref = {"n": n, "size": size, "formula": __doc__.strip().splitlines()[-1],
           "mask_logits": b64(mask.numpy()), "class_logits": b64(cls.numpy())}
    if len(outs) > 2:
        ref["class_spread"] = b64(outs[2].numpy())
    if hasattr(model, "log_odds"):
        # the descriptor branch's own output, so the test can tell that it was exercised (non-zero)
        ref["descriptor_log_odds"] = [float(v) for v in model.log_odds(x, mask)]
    with open(path, "w") as f:
        json.dump(ref, f)
        f.write("\n")
