"""A network trained at one input size inside a graph fed at another: `weights.pt@128` names
weights trained at 128 x 128 (training/train.py --size 128). In an ensemble exported at 256 x 256
such a member sees the input resized to its own size and hands back mask logits resized to the
input's, the same views training/tta_search.py scores with name=weights.pt@128."""
import torch
import torch.nn.functional as F


def split_size(spec):
    """'weights.pt@128' -> ('weights.pt', 128); 'weights.pt' -> ('weights.pt', None)."""
    path, at, n = spec.rpartition("@")
    if at and n.isdigit() and int(n) > 0 and path:
        return path, int(n)
    return spec, None


class Resized(torch.nn.Module):
    """net at n x n: input resized bilinearly (half-pixel centres; halving is then an exact 2 x 2
    average), mask logits resized back to the input's size; class logits unchanged."""

    def __init__(self, net, n):
        super().__init__()
        self.net, self.n = net, n

    def forward(self, x):
        h, w = x.shape[-2:]
        m, c = self.net(F.interpolate(x, size=(self.n, self.n), mode="bilinear", align_corners=False))
        return F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False), c
