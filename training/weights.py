"""Checkpoint files small enough to travel: large float tensors stored as float16, the file split
into parts of at most max_bytes (the GPU machine hands back files of at most 16 MiB each).

The float16 rounding is part of the model: what is loaded back (and exported) is exactly what
was scored on val after loading, never the float32 weights the GPU saw.
"""
import glob
import io
import os

import torch


def save_atomic(obj, path):
    """torch.save through a temporary file and a rename, so a run killed while saving leaves the
    previous file whole (--resume reads the checkpoint this writes every epoch)."""
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def save_compact(state, path, max_bytes=15 * 2**20):
    small = {k: (v.detach().cpu().half() if v.is_floating_point() and v.numel() > 4096 else v.detach().cpu())
             for k, v in state.items()}
    buf = io.BytesIO()
    torch.save(small, buf)
    data = buf.getvalue()
    parts = []
    for i in range(0, len(data), max_bytes):
        p = "%s.part%d" % (path, i // max_bytes)
        with open(p + ".tmp", "wb") as f:
            f.write(data[i:i + max_bytes])
        os.replace(p + ".tmp", p)
        parts.append(p)
    return parts


def load_state(path):
    """A state dict from a plain .pt file or from the parts save_compact wrote, as float32."""
    if os.path.exists(path):
        data = open(path, "rb").read()
    else:
        parts = sorted(glob.glob(glob.escape(path) + ".part*"), key=lambda p: int(p.rsplit("part", 1)[1]))
        if not parts:
            raise FileNotFoundError(path)
        data = b"".join(open(p, "rb").read() for p in parts)
    state = torch.load(io.BytesIO(data), map_location="cpu")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
