#!/bin/bash
# Trains Attention U-Nets side by side on one GPU within a fixed time (default: four), for the
# device tool's machine (no BUSI folder there: it reads the packed train+val file from training/pack.py).
# Session 24's runs (rule 20 in model/EXPERIMENTS.md: the MobileNetV2 encoder from ImageNet weights), carrying the pack
#   and training/cache/mobilenet_v2_imagenet.{json,bin} (training/pretrained/extract_nsfwjs.js; the .onnx moved out, as below):
#   BUDGET=400 EXTRA="--arch mobilenetv2 --lr 1e-3 --normal-penalty 0.25 --zoom-range 0.5,1.3 --val-zooms 0.5,0.75,1,1.25
#   --select-normal-weight 0.25 --channels-last" RUNS="p3:16:80:16:image:--encoder-lr=0.3
#   p3b:16:81:16:image:--encoder-lr=0.3 p1:16:82:16:image r1:16:83:16:image:--pretrained=none"
#   timeout 560 bash training/gpu/run.sh
# Session 22's runs (rule 15 in model/EXPERIMENTS.md), carrying the pack and 1.4.0's two 256² networks rebuilt by
#   training/from_onnx.py --model <1.4.0's model.json> --calibrate --out training/runs/m140 (the .onnx moved out, as below):
#   BUDGET=400 EXTRA="--lr 1e-3 --normal-penalty 0.25 --zoom-range 0.5,1.3 --val-zooms 0.5,0.75,1,1.25
#   --select-normal-weight 0.25" RUNS="f25h:16:70:16:image:--init=training/runs/m140/member0.pt
#   f25hc:16:71:16:image:--init=training/runs/m140/member0.pt+--class-weight=1
#   b25hc:16:72:16:image:--init=training/runs/m140/member1.pt+--class-weight=1
#   f25h2:16:73:16:image:--init=training/runs/m140/member0.pt" timeout 545 bash training/gpu/run.sh
# Session 20's runs (rule 13 in model/EXPERIMENTS.md), carrying the pack and the init weights (the .onnx moved out, as below):
#   BUDGET=420 EXTRA="--init training/runs/shipped/member1.pt --lr 3e-4 --zoom-range 0.5,1.3 --val-zooms 0.5,0.75,1,1.25
#   --select-normal-weight 0.25" RUNS="h0:16:60:16:image h25:16:61:16:image:--normal-penalty=0.25
#   h25h:16:62:16:image:--normal-penalty=0.25+--lr=1e-3 h5h:16:63:16:image:--normal-penalty=0.5+--lr=1e-3"
#   timeout 560 bash training/gpu/run.sh
# Session 19's runs (rule 11 in model/EXPERIMENTS.md), as run, carrying the pack and the init weights:
#   BUDGET=400 EXTRA="--init training/runs/shipped/member1.pt --lr 3e-4 --zoom-range 0.5,1.3 --val-zooms 0.5,0.75,1,1.25"
#   RUNS="g0:16:40:16:image g5:16:41:16:image:--normal-penalty=0.5 g5h:16:42:16:image:--normal-penalty=0.5+--lr=1e-3
#   g10:16:43:16:image:--normal-penalty=1" timeout 550 bash training/gpu/run.sh
#   The pack (35 MB), the init weights (9 MB) and the tracked tree (29 MB, 26 of it the shipped .onnx) exceed the
#   64 MiB that travels: the .onnx was moved out of the working tree for that call and put back after it.
# Session 5's runs:  PROBE="32:32 16:16" BUDGET=440 RUNS="w32:32:3:32 b16long:16:3:16" bash training/gpu/run.sh
#   /usr/bin/python3 training/pack.py --size 256        # here, once
#   device run, carry training/cache/busi-256-trainval.pt.gz:  bash training/gpu/run.sh
# Each run's best weights (chosen on val) come back in $OUT as float16 parts, with the logs.
# Then, here:  training/train.py --export-only --checkpoints <chosen parts> (see model/EXPERIMENTS.md)
set -u
OUT=${OUT:-training/runs/gpu-out}
BUDGET=${BUDGET:-420}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
# name:base:seed[:batch[:dice]]; runs side by side share the GPU by time-slicing (no speed-up in sum);
# dice = batch or image (train.py --dice), e.g. RUNS="z16:16:5:16 z16pi:16:5:16:image" compares the two losses;
# extra = that run's own train.py options, '+' between them and '=' inside each, e.g. "--normal-penalty=0.5+--lr=1e-3"
RUNS=${RUNS:-"b32s1:32:1 b16s1:16:1 b16s2:16:2 b16s3:16:3"}
# EXTRA: more train.py options for every run, e.g. "--init training/runs/gpu1/b16s3.pt --lr 1e-3"
ARR=training/cache/busi-256-trainval.pt.gz
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=3
mkdir -p training/runs/gpu "$OUT"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
# PROBE="base:batch ...": time both memory layouts first and train in the faster one for the first pair
LAYOUT=""
if [ -n "${PROBE:-}" ]; then LAYOUT=$($PY training/gpu/probe.py $PROBE 2> >(tee "$OUT/probe.txt" >&2)); fi
for r in $RUNS; do
  IFS=: read -r name base seed batch dice extra <<<"$r"
  ( $PY training/train.py --device "$DEVICE" --arrays $ARR --size 256 --batch "${batch:-16}" --threads 3 \
      --time-budget "$BUDGET" --train-only --base "$base" --seed "$seed" --dice "${dice:-batch}" $LAYOUT \
      --out "training/runs/gpu/$name" --compact-out "$OUT" ${EXTRA:-} ${extra//+/ } > "training/runs/gpu/$name.log" 2>&1
    echo "$name exit $?" ) &
done
wait
for r in $RUNS; do n=${r%%:*}; echo "== $n"; grep -v '^epoch' "training/runs/gpu/$n.log" | tail -n 4; grep '^epoch' "training/runs/gpu/$n.log" | tail -n 2; done
tar czf "$OUT/logs.tar.gz" --exclude="*.pt" -C training/runs gpu
ls -la "$OUT"
