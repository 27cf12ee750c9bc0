#!/usr/bin/env bash
# Rebuild the built-in default models (edgepose/models/weights/default_{det,pose}.pth).
#
#   recipes/train_defaults.sh                 # data + both trainings + evaluation in build/defaults
#   INSTALL=1 recipes/train_defaults.sh       # ... and copy the weights into edgepose/models/weights
#
# Everything is seeded: the synthetic sets (train seed 0, validation seed 1000), the
# augmentation draws and the shuffling (--seed 0).  CPU only; the two trainings run side by
# side with one torch thread each (fastest on a small, shared machine: ~60-75 min on 2 busy
# cores; with free cores give each more --threads).
set -euo pipefail
cd "$(dirname "$0")/.."

EDGEPOSE=${EDGEPOSE:-"python -m edgepose"}
OUT=${OUT:-build/defaults}
TRAIN_IMAGES=${TRAIN_IMAGES:-4000}
VAL_IMAGES=${VAL_IMAGES:-500}
THREADS=${THREADS:-1}
mkdir -p "$OUT"

# 1. data: 256x256 scenes with 0..4 people (COCO keypoints format)
[ -f "$OUT/train/annotations.json" ] || $EDGEPOSE data synth --out "$OUT/train" --images "$TRAIN_IMAGES" --seed 0
[ -f "$OUT/val/annotations.json" ]   || $EDGEPOSE data synth --out "$OUT/val" --images "$VAL_IMAGES" --seed 1000

# 2. detector (slim CenterNet R18, 256x256, person only) and pose model (slim SimplePose R18, 128x96)
$EDGEPOSE train det --data "$OUT/train" --out "$OUT/default_det.pth" --arch default_det \
    --epochs 8 --batch-size 16 --lr 1.5e-3 --seed 0 --threads "$THREADS" > "$OUT/train_det.log" 2>&1 &
DET=$!
$EDGEPOSE train pose --data "$OUT/train" --out "$OUT/default_pose.pth" --arch default_pose \
    --epochs 8 --batch-size 32 --lr 1.5e-3 --seed 0 --threads "$THREADS" > "$OUT/train_pose.log" 2>&1 &
POSE=$!
wait "$DET"
wait "$POSE"
tail -n 1 "$OUT/train_det.log" "$OUT/train_pose.log"

# 3. COCO box AP and keypoint AP of the FP32 pipeline on the validation set
$EDGEPOSE eval --ann "$OUT/val/annotations.json" --images "$OUT/val/images" --backend torch \
    --det "default_det:$OUT/default_det.pth" --pose "default_pose:$OUT/default_pose.pth" \
    --json "$OUT/val_metrics.json" --no-progress

if [ "${INSTALL:-0}" = "1" ]; then
    cp "$OUT/default_det.pth" edgepose/models/weights/default_det.pth
    cp "$OUT/default_pose.pth" edgepose/models/weights/default_pose.pth
    echo "installed the new weights in edgepose/models/weights/ (the ONNX cache re-exports them on next use)"
fi
