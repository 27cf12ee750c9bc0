#!/usr/bin/env bash
# Prune the built-in default models (trained on synthetic people) at ratios 0.3 and 0.5 and
# record MACs, ORT latency ratio and AP before/after fine-tuning (docs/compression.md, "Pruning").
# Usage: benchmarks/prune_defaults.sh [WORK_DIR]   (about 10-15 min per model on 2 busy CPU cores)
set -euo pipefail
WORK=${1:-build/prune}
EP=${EDGEPOSE:-python -m edgepose}
W=edgepose/models/weights
mkdir -p "$WORK"
[ -f "$WORK/train/annotations.json" ] || $EP data synth --out "$WORK/train" --images 800 --seed 0
[ -f "$WORK/val/annotations.json" ] || $EP data synth --out "$WORK/val" --images 200 --seed 1000
run() {  # model ratio epochs
  $EP prune "$1" --weights "$W/$1.pth" --ratio "$2" --data "$WORK/train" --val "$WORK/val" \
      --sparse-epochs 1 --epochs "$3" --kd --no-progress --out "$WORK/$1_r$2.pth" | tee "$WORK/$1_r$2.txt"
}
for r in 0.3 0.5; do run default_pose "$r" 4; done
for r in 0.3 0.5; do run default_det "$r" 3; done
