"""PyTorch reference outputs for the ONNX parity test (test/unit/onnx-parity.test.ts).

The input is a deterministic pattern that the TypeScript test regenerates with the same
formula, so no image data is committed: x[n, 0, i, j] = 0.5 + 0.4 * sin(0.11 * i + 0.07 * j + n) * cos(0.05 * j - 0.13 * i).
"""
import base64
import json

import numpy as np
import torch


def pattern(n, h, w):
    i = np.arange(h, dtype=np.float64)[:, None]
    j = np.arange(w, dtype=np.float64)[None, :]
    return np.stack([0.5 + 0.4 * np.sin(0.11 * i + 0.07 * j + k) * np.cos(0.05 * j - 0.13 * i) for k in range(n)])[:, None].astype(np.float32)


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


@torch.no_grad()
def write_reference(model, size, path, n=2):
    model.eval()
    x = torch.from_numpy(pattern(n, size, size))
    mask, cls = model(x)
    with open(path, "w") as f:
        json.dump({"n": n, "size": size, "formula": __doc__.strip().splitlines()[-1],
                   "mask_logits": b64(mask.numpy()), "class_logits": b64(cls.numpy())}, f)
        f.write("\n")
