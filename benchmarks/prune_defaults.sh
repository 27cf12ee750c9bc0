#!/usr/bin/env bash
# Prune the built-in default models (trained on synthetic people) at ratios 0.3 and 0.5 and
# record MACs, ORT latency ratio and AP before/after fine-tuning (docs/compression.md, "Pruning").
# Usage: benchmarks/prune_defaults.sh [WORK_DIR]   (about 7-9 min per run on 2 busy CPU cores)
set -euo pipefail
WORK=${1:-build/prune}
EP=${EDGEPOSE:-python -m edgepose}
W=edgepose/models/weights
mkdir -p "$WORK"
[ -f "$WORK/train/annotations.json" ] || $EP data synth --out "$WORK/train" --images 800 --seed 0
[ -f "$WORK/val/annotations.json" ] || $EP data synth --out "$WORK/val" --images 200 --seed 1000
run() {  # model ratio epochs  (the "long" schedule of docs/compression.md)
  nice -n 10 $EP prune "$1" --weights "$W/$1.pth" --ratio "$2" --data "$WORK/train" --val "$WORK/val" \
      --eval-limit 100 --sparse-epochs 1 --epochs "$3" --lr 1.5e-3 --kd --no-progress \
      --out "$WORK/$1_r$2.pth" | tee "$WORK/$1_r$2.txt"
}
for r in 0.3 0.5; do run default_pose "$r" 5; done
for r in 0.3 0.5; do run default_det "$r" 4; done
