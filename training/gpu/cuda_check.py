#!/usr/bin/python3
"""Runs the shipped ONNX model with onnxruntime's CUDA provider, on the device tool's GPU machine,
and compares it with the CPU provider and with model/reference-outputs.json (PyTorch's outputs).
This checks the graph on CUDA (every op placed, the outputs within tolerance, the speed); it does
not check onnxruntime-node's CUDA 12 build, which that machine's CUDA 13 cannot load.

  python3 training/gpu/cuda_check.py [model/attention-unet-busi.onnx]    # prints JSON
"""
import base64
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from reference import pattern  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))


def unb64(s, shape):
    return np.frombuffer(base64.b64decode(s), dtype="<f4").reshape(shape)


def timed(sess, name, x, runs=20):
    sess.run(None, {name: x})
    t = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {name: x})
    return 1000 * (time.perf_counter() - t) / runs


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "model", "attention-unet-busi.onnx")
    ref = json.load(open(os.path.join(os.path.dirname(path), "reference-outputs.json")))
    spec = json.load(open(os.path.join(os.path.dirname(path), "model.json")))
    t = spec["outputs"]["mask"]["threshold"]
    logit_t = float(np.log(t / (1 - t)))  # sigmoid(v) > t  <=>  v > logit(t)
    n, size = ref["n"], ref["size"]
    x = pattern(n, size, size)
    out = {"onnxruntime": ort.__version__, "available_providers": ort.get_available_providers()}
    if "CUDAExecutionProvider" not in out["available_providers"]:
        out["cuda"] = "not checked: this onnxruntime has no CUDA provider (a GPU build, onnxruntime-gpu, has one)"
    results = {}
    for prov in ("CUDAExecutionProvider", "CPUExecutionProvider"):
        if prov not in ort.get_available_providers():
            continue
        so = ort.SessionOptions()
        so.log_severity_level = 2  # warnings: a node that falls back to the CPU is named
        sess = ort.InferenceSession(path, so, providers=[prov])
        name = sess.get_inputs()[0].name
        mask, cls = sess.run(None, {name: x})
        results[prov] = (mask, cls)
        one = x[:1]
        out[prov] = {"providers_in_session": sess.get_providers(),
                     "mask_max_abs_diff_vs_pytorch": float(np.abs(mask - unb64(ref["mask_logits"], mask.shape)).max()),
                     "class_max_abs_diff_vs_pytorch": float(np.abs(cls - unb64(ref["class_logits"], cls.shape)).max()),
                     "ms_per_image_batch1": round(timed(sess, name, one), 2),
                     "ms_per_image_batch8": round(timed(sess, name, np.repeat(one, 8, 0)) / 8, 2)}
    if len(results) == 2:
        (mg, cg), (mc, cc) = results["CUDAExecutionProvider"], results["CPUExecutionProvider"]
        out["cuda_vs_cpu"] = {"mask_max_abs_diff": float(np.abs(mg - mc).max()),
                              "class_max_abs_diff": float(np.abs(cg - cc).max()),
                              "pixels_on_other_side_of_threshold": int(((mg > logit_t) != (mc > logit_t)).sum()),
                              "argmax_class_equal": bool((cg.argmax(1) == cc.argmax(1)).all())}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
