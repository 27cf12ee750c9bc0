#!/usr/bin/env bash
# Prune the built-in default models (trained on synthetic people) and record MACs, ORT latency
# ratio and AP before/after fine-tuning (docs/compression.md, "Pruning").  --ratio is the
# fraction of MACs removed (the channel ratio that reaches it is searched for).
# Usage: benchmarks/prune_defaults.sh [WORK_DIR]
# Wall / CPU time on the shared 2-core CPU (one torch thread, nice 10, 12-15 other busy
# processes): the pose 0.5 "target" run 70 / 16 min, the short runs 2-8 / 1.6 min, the
# detector run 22 / 3.4 min.
set -euo pipefail
WORK=${1:-build/prune}
EP=${EDGEPOSE:-python -m edgepose}
W=edgepose/models/weights
export OMP_NUM_THREADS=1
mkdir -p "$WORK"
[ -f "$WORK/train4k/annotations.json" ] || $EP data synth --out "$WORK/train4k" --images 4000 --seed 0
[ -f "$WORK/train800/annotations.json" ] || $EP data synth --out "$WORK/train800" --images 800 --seed 0
[ -f "$WORK/val/annotations.json" ] || $EP data synth --out "$WORK/val" --images 200 --seed 1000
run() {  # tag model ratio scope train sparse_epochs epochs [lr]  (--kd, all 200 val images)
  nice -n 10 $EP prune "$2" --weights "$W/$2.pth" --ratio "$3" --scope "$4" --data "$WORK/$5" --val "$WORK/val" \
      --sparse-epochs "$6" --epochs "$7" --lr "${8:-1.5e-3}" --kd --threads 1 --no-progress \
      --out "$WORK/$1.pth" | tee "$WORK/$1.txt"
}
# the target schedule: 50 % of the MACs removed, 4000 images, 1 sparsity + 6 fine-tune epochs
for r in 0.5 0.3; do run pose_r$r default_pose $r global train4k 1 6; done
# short schedule at 0.5 and 0.3 (and with a lower peak rate)
for r in 0.5 0.3; do
  run pose_short_r$r default_pose $r global train800 0 3
  run pose_short_lr5e-4_r$r default_pose $r global train800 0 3 5e-4
done
# scope comparison at (nearly) equal MACs: layer scope at 0.5 lands on 41.9 %, global 0.57 on 42.9 %
run pose_layer_r0.5 default_pose 0.5 layer train800 0 3
run pose_global_r0.57 default_pose 0.57 global train800 0 3
# detector
for r in 0.5 0.3; do run det_r$r default_det $r global train800 1 4; done
