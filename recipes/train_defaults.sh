#!/usr/bin/env bash
# Rebuild the built-in default models (edgepose/models/weights/default_{det,pose}.pth).
#
#   recipes/train_defaults.sh                 # data + both trainings + evaluation in build/defaults
#   INSTALL=1 recipes/train_defaults.sh       # ... and copy the weights into edgepose/models/weights
#
# Everything is seeded: the synthetic sets (train seed 0, validation seed 1000), the
# augmentation draws and the shuffling (--seed 0).  CPU only; the two trainings run side by
# side with one torch thread each (fastest on a small, shared machine: about 55 min for the
# detector and 40 min for the pose model on 2 busy cores; with free cores give each more --threads).
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

# 2. detector (slim CenterNet R18, 256x256, person only) and pose model (slim SimplePose R18, 128x96).
#    Two phases each, exactly as the shipped weights were made: 8 epochs (one warm-up + cosine
#    schedule), then --resume to 12 epochs (the schedule recomputed for 12 epochs continues from
#    step 2000 / 1984 at about 20 % of the peak rate and decays to 2 %).
train_both() {  # $1 = epochs, $2 = extra flag
    $EDGEPOSE train det --data "$OUT/train" --out "$OUT/default_det.pth" --arch default_det \
        --epochs "$1" --batch-size 16 --lr 1.5e-3 --seed 0 --threads "$THREADS" $2 > "$OUT/train_det_$1.log" 2>&1 &
    local det=$!
    $EDGEPOSE train pose --data "$OUT/train" --out "$OUT/default_pose.pth" --arch default_pose \
        --epochs "$1" --batch-size 32 --lr 1.5e-3 --seed 0 --threads "$THREADS" $2 > "$OUT/train_pose_$1.log" 2>&1 &
    local pose=$!
    wait "$det"
    wait "$pose"
    tail -n 1 "$OUT/train_det_$1.log" "$OUT/train_pose_$1.log"
}
train_both 8 ""
train_both 12 --resume

# 3. COCO box AP and keypoint AP of the FP32 pipeline on the validation set
$EDGEPOSE eval --ann "$OUT/val/annotations.json" --images "$OUT/val/images" --backend torch \
    --det "default_det:$OUT/default_det.pth" --pose "default_pose:$OUT/default_pose.pth" \
    --json "$OUT/val_metrics.json" --no-progress

if [ "${INSTALL:-0}" = "1" ]; then
    cp "$OUT/default_det.pth" edgepose/models/weights/default_det.pth
    cp "$OUT/default_pose.pth" edgepose/models/weights/default_pose.pth
    echo "installed the new weights in edgepose/models/weights/ (the ONNX cache re-exports them on next use)"
fi
