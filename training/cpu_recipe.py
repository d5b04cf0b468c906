"""The CPU recipe as one command (model/EXPERIMENTS.md, rules 32, 34 and 37): train one network
design twice, with two seeds and half the time each, then export the two chosen checkpoints averaged
in one ONNX graph (training/train.py does each step; this file only sequences them). `npm run train`
runs it with --channels-last --member-seconds 2700 (rule 34's command, adopted under rule 37); run
without options it is rule 32's command (2,820 s each, the default memory layout).

    /usr/bin/python3 training/cpu_recipe.py [--out DIR] [--model-dir DIR] [--resume] [train.py options]

Options it does not know go to every training/train.py call (e.g. --data, --threads). --resume
continues an interrupted run: a member that finished its budget stops at once, one cut short goes
on from its last epoch, and the export runs again.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# the network and options of rule 22 (npm run train's one-network recipe before rule 37)
NETWORK = ["--arch", "mobilenetv2", "--encoder-lr", "0.3", "--lr", "1e-3", "--size", "128", "--dice", "image",
           "--normal-penalty", "0.25", "--zoom-range", "0.5,1.3", "--val-zooms", "0.5,0.75,1,1.25",
           "--select-normal-weight", "0.25"]
EXPORT = ["--descriptor-head", "fit", "--class-temperature", "fit"]
SEEDS = (20261126, 20261127)
MEMBER_SECONDS = 2820  # two of them: 5,640 s of training, leaving the export inside two hours


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "training", "runs", "default"))
    p.add_argument("--model-dir", default=os.path.join(ROOT, "model"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seeds", default=",".join(str(s) for s in SEEDS), help="one network per seed")
    p.add_argument("--member-seconds", type=float, default=MEMBER_SECONDS, help="training time per network")
    args, passthrough = p.parse_known_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        p.error("--seeds must be integers separated by commas")
    if len(args.seeds) < 1 or len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds must name one or more different seeds")
    if args.member_seconds <= 0:
        p.error("--member-seconds must be positive")
    return args, passthrough


def train_py(*options):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), *options]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def member_facts(out):
    with open(os.path.join(out, "best.json")) as f:
        best = json.load(f)
    with open(os.path.join(out, "trained.json")) as f:
        trained = json.load(f)
    # best.json's train_seconds is the time at the best epoch; the run's own total is trained.json's
    return {"best_epoch": best["epoch"], "best_train_seconds": best["train_seconds"], **trained}


def main(argv):
    args, passthrough = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    members = []
    for seed in args.seeds:
        out = os.path.join(args.out, "seed-%d" % seed)
        os.makedirs(out, exist_ok=True)
        train_py(*NETWORK, *passthrough, "--seed", str(seed), "--time-budget", "%g" % args.member_seconds,
                 "--train-only", "--out", out, *(["--resume"] if args.resume else []))
        members.append((seed, out))
    facts = [dict(seed=seed, **member_facts(out)) for seed, out in members]
    summary = {
        "members": facts,
        "epochs": sum(f["epochs"] for f in facts),
        "best_epoch": None,
        "train_seconds": sum(f["train_seconds"] for f in facts),
        "time_budget_seconds": args.member_seconds * len(members),
        # what else every training/train.py call was given (e.g. --channels-last, rule 34), so the facts say it
        "extra_options": passthrough,
        "recipe": "training/cpu_recipe.py: %d networks of the same design (an Attention U-Net decoder "
                  "and mask-guided class head on a MobileNetV2 encoder started from ImageNet weights, 128 x 128, "
                  "per-image soft Dice, scale range 0.5-1.3, a penalty on lesion-like pixels of images without a "
                  "lesion), seeds %s, %g s of training each on the CPU, each checkpoint chosen on val at 1/2, 3/4, "
                  "1 and 5/4 size with a cost for outlined normal val images; logits averaged in the ONNX graph; "
                  "descriptor head and class temperature fitted on val (model/EXPERIMENTS.md, rules 32, 34 and 37)"
                  % (len(members), ", ".join(str(s) for s, _ in members), args.member_seconds),
    }
    facts_path = os.path.join(args.out, "facts.json")
    with open(facts_path, "w") as f:
        json.dump(summary, f, indent=1)
    train_py(*NETWORK, *passthrough, *EXPORT, "--seed", str(args.seeds[0]), "--export-only",
             "--checkpoints", ",".join(os.path.join(out, "best.pt") for _, out in members),
             "--facts", facts_path, "--out", args.out, "--model-dir", args.model_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
