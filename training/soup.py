#!/usr/bin/python3
"""Average the weights of networks that share one training lineage (a "model soup"; with a parent
and its fine-tuned child this is WiSE-FT, Wortsman et al. 2022, which kept the fine-tuned
accuracy and gained under distribution shift). Only networks fine-tuned from one another lie in
one basin: averaging two networks trained from different random starts gives noise.

  /usr/bin/python3 training/soup.py --out soup.pt parent.pt:0.5 child.pt:0.5

Weights are normalised to sum to 1. Batch-norm running statistics are averaged like the weights
(the networks are close); integer buffers come from the first network. The result is a plain
state dict that train.load_members and tta_search.py read like any checkpoint.
"""
import argparse
import os
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from weights import load_state, save_atomic  # noqa: E402


def soup(states, weights):
    if len(states) != len(weights) or not states:
        raise ValueError("one weight per network")
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            raise ValueError("the networks do not have the same layers: %s" % sorted(keys ^ set(s))[:5])
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("the weights must sum to more than 0")
    out = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = sum(s[k] * (w / total) for s, w in zip(states, weights))
        else:
            out[k] = v.clone()
    return out


def parse_member(text):
    path, _, w = text.rpartition(":")
    if not path:
        return text, 1.0
    return path, float(w)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+", help="path[:weight] of each network (weight 1 if left out)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    members = [parse_member(m) for m in args.members]
    states = [load_state(path) for path, _ in members]
    result = soup(states, [w for _, w in members])
    save_atomic(result, args.out)
    print("wrote %s from %s" % (args.out, ", ".join("%s x %g" % m for m in members)))


if __name__ == "__main__":
    main()
