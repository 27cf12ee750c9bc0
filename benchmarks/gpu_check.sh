#!/usr/bin/env bash
# All GPU checks in one go (target: under 8 minutes), from the repository root:
#     bash benchmarks/gpu_check.sh
# The one script that proves the GPU parts on a machine with a CUDA GPU:
#   1. nvcc compile checks of the plugin kernels (sm_87, sm_90);
#   2. tests/gpu: CUDA kernels vs NumPy references and the decompositions (fp32/fp16), and, where
#      TensorRT + cuda-python are installed, engines vs ONNX Runtime (tests/gpu/test_tensorrt_engines.py);
#   3. kernel timings vs the standard-op decompositions (benchmarks/kernel_timing.py; printed only);
#   4. where TensorRT can build engines: benchmarks/trt_check.sh (default-model engines + bench rows);
# then a summary. Installs nothing and needs no network: it uses the python, torch, nvcc,
# TensorRT and cuda-python already on the machine. With $OUT set (device runner) the log lands there.
set -u
cd "$(dirname "$0")/.." || exit 2
START=$(date +%s)
LOGDIR=${OUT:-$(mktemp -d)}
LOG="$LOGDIR/gpu_check.log"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export EDGEPOSE_KERNEL_SHIM_DIR=${EDGEPOSE_KERNEL_SHIM_DIR:-$(mktemp -d)}

{
  echo "== environment ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null \
    || echo "nvidia-smi: not available"
  "$PY" -c "import torch; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuda available:', torch.cuda.is_available())" \
    || echo "torch: not importable"
  if command -v nvcc >/dev/null 2>&1; then nvcc --version | tail -n 2 | head -n 1; else echo "nvcc: not on PATH"; fi
} 2>&1 | tee "$LOG"

echo "== kernel compile checks (nvcc sm_87, sm_90)" | tee -a "$LOG"
timeout 90 "$PY" -m pytest tests/test_plugins_build.py -q -p no:cacheprovider 2>&1 | tail -n 5 | tee -a "$LOG"
BUILD_RC=${PIPESTATUS[0]}

echo "== GPU tests (tests/gpu)" | tee -a "$LOG"
timeout 200 "$PY" -m pytest tests/gpu -s -q -p no:cacheprovider -rs 2>&1 | tee -a "$LOG.gpu" | tail -n 40
GPU_RC=${PIPESTATUS[0]}
cat "$LOG.gpu" >> "$LOG"

echo "== kernel timings (benchmarks/kernel_timing.py)" | tee -a "$LOG"
timeout 60 "$PY" benchmarks/kernel_timing.py --shim-dir "$EDGEPOSE_KERNEL_SHIM_DIR" 2>&1 | tee -a "$LOG.gpu" | tail -n 30
TIMING_RC=${PIPESTATUS[0]}
grep -E '^\[timing\] ' "$LOG.gpu" >> "$LOG"

echo "== TensorRT engines (only where TensorRT is importable)" | tee -a "$LOG"
TRT_RC=skipped
TRT_STATUS=$("$PY" -c "import sys; from edgepose.backends.trt.version import tensorrt_status as s; ok, why = s(); print(why); sys.exit(0 if ok else 1)" 2>&1)
TRT_OK=$?
echo "$TRT_STATUS" | tee -a "$LOG"
if [ "$TRT_OK" -eq 0 ]; then
  LEFT=$((START + 465 - $(date +%s)))  # the whole script stays under 8 minutes
  [ "$LEFT" -lt 30 ] && LEFT=30
  TRT_CHECK_SKIP_TESTS=1 timeout "$LEFT" bash benchmarks/trt_check.sh 2>&1 | tail -n 20 | tee -a "$LOG"
  TRT_RC=${PIPESTATUS[0]}
fi

END=$(date +%s)
{
  echo
  echo "================ summary ================"
  grep -E '^\[kernels\]' "$LOG.gpu" | head -n 1
  grep -E '^\[timing\] ' "$LOG.gpu" | sed 's/^\[timing\] /  /'
  echo "compile checks : $(grep -E '(passed|failed|skipped|error)' "$LOG" | grep -v '^==' | head -n 1 | sed 's/=//g') (rc=$BUILD_RC)"
  echo "GPU tests      : $(grep -E '[0-9]+ (passed|failed|skipped|error)' "$LOG.gpu" | tail -n 1 | sed 's/=//g') (rc=$GPU_RC)"
  [ "$GPU_RC" = 124 ] && echo "GPU tests      : TIMED OUT after 200 s"
  echo "kernel timings : rc=$TIMING_RC"
  echo "TensorRT check : rc=$TRT_RC (benchmarks/trt_check.sh; 'skipped' when TensorRT cannot build here)"
  echo "elapsed        : $((END - START)) s"
  echo "log            : $LOG"
} | tee -a "$LOG"
rm -f "$LOG.gpu"

if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "NO CUDA GPU: tests/gpu was not collected, nothing was checked on a GPU (exit 3)" | tee -a "$LOG"
  exit 3
fi
if [ "$GPU_RC" -ne 0 ] || [ "$BUILD_RC" -ne 0 ] || [ "$TIMING_RC" -ne 0 ]; then exit 1; fi
if [ "$TRT_RC" != skipped ] && [ "$TRT_RC" -ne 0 ]; then exit 1; fi
exit 0
