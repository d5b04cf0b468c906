#!/usr/bin/python3
"""Times training steps of the Attention U-Net on the GPU, contiguous vs channels-last, before a
training run chooses its layout. Prints a table to stderr and, on stdout, "--channels-last" when
that layout was faster for the first configuration (else nothing), for training/gpu/run.sh.

  python3 training/gpu/probe.py 32:32 16:16      # base:batch pairs
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from model import AttentionUNet  # noqa: E402


def step_ms(base, batch, fmt, steps=20, warmup=6):
    torch.manual_seed(0)
    model = AttentionUNet(base).cuda().to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    x = torch.rand(batch, 1, 256, 256, device="cuda").contiguous(memory_format=fmt)
    m = (torch.rand(batch, 1, 256, 256, device="cuda") > 0.7).float()
    y = torch.randint(0, 3, (batch,), device="cuda")
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            t = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ml, cl = model(x)
        loss = F.binary_cross_entropy_with_logits(ml.float(), m) + F.cross_entropy(cl.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return 1000 * (time.time() - t) / steps


def main():
    torch.backends.cudnn.benchmark = True
    configs = [tuple(int(v) for v in a.split(":")) for a in sys.argv[1:]] or [(16, 16)]
    first = None
    for base, batch in configs:
        row = {}
        for name, fmt in (("contiguous", torch.contiguous_format), ("channels-last", torch.channels_last)):
            try:
                row[name] = step_ms(base, batch, fmt)
            except Exception as e:  # a layout that fails is simply not chosen
                print("base %d batch %d %s failed: %s" % (base, batch, name, e), file=sys.stderr)
                row[name] = float("inf")
        print("probe base %d batch %d: contiguous %.1f ms/step, channels-last %.1f ms/step"
              % (base, batch, row["contiguous"], row["channels-last"]), file=sys.stderr)
        first = first or row
    if first["channels-last"] < 0.95 * first["contiguous"]:
        print("--channels-last")


if __name__ == "__main__":
    main()
