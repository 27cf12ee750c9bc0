#!/usr/bin/env bash
# TensorRT check on a GPU machine, from the repository root:
#     bash benchmarks/trt_check.sh            # quick benchmark (bench.py --quick)
#     TRT_CHECK_FULL=1 bash benchmarks/trt_check.sh       # full benchmark
#     TRT_CHECK_SKIP_TESTS=1 bash benchmarks/trt_check.sh # when gpu_check.sh already ran tests/gpu
# 1. says which TensorRT / GPU it found (exit 3 when engines cannot be built here);
# 2. `edgepose build --fp16` and `--int8` of the default models into one folder, then builds any
#    engine that is still missing with onnx2engine (timing cache shared by all builds);
# 3. runs tests/gpu/test_tensorrt_engines.py (engines vs ONNX Runtime, fp16 ~1e-2, int8 cosine);
# 4. runs benchmarks/bench.py on that folder (ORT rows for reference + TensorRT rows) and prints
#    FPS and AP per precision.
# Installs nothing, needs no network. With $OUT set (device runner) the log and bench.json land there.
set -u
cd "$(dirname "$0")/.." || exit 2
START=$(date +%s)
PY=${PYTHON:-python3}
OUTDIR=${OUT:-$(mktemp -d)}
BUILD=${TRT_CHECK_BUILD:-$OUTDIR/trt_build}
LOG="$OUTDIR/trt_check.log"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$BUILD"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

say "== TensorRT ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | tee -a "$LOG" \
  || say "nvidia-smi: not available"
STATUS=$("$PY" -c 'import sys
from edgepose.backends.trt.version import tensorrt_status
ok, why = tensorrt_status()
print(("ready: " if ok else "NOT AVAILABLE: ") + why)
sys.exit(0 if ok else 3)' 2>&1)
STATUS_RC=$?
say "$STATUS"
if [ "$STATUS_RC" -ne 0 ]; then
  say "no TensorRT engine can be built on this machine; nothing was checked (exit 3)"
  exit 3
fi

BUILD_RC=0
for P in fp16 int8; do
  say "== edgepose build --$P --out $BUILD"
  timeout 900 "$PY" -m edgepose build --"$P" --out "$BUILD" --quiet 2>&1 | tail -n 8 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  [ "$rc" -ne 0 ] && BUILD_RC=$rc
done
say "== engines (onnx2engine for any .onnx without one; skipped when the manifest matches)"
"$PY" - "$BUILD" <<'EOF' 2>&1 | tee -a "$LOG"
import logging, sys
from pathlib import Path
from edgepose.backends.trt.manifest import read_manifest
from edgepose.backends.trt.build import build_engine_files
logging.basicConfig(level=logging.INFO, format="  %(message)s")
build = Path(sys.argv[1])
onnx = [p for p in sorted(build.glob("*.onnx")) if p.name.split(".")[1:2] in (["fp16"], ["int8"])]
engines = build_engine_files(onnx, build, timing_cache=build / "trt.timing")
for e in engines:
    m = read_manifest(e)
    print(f"  {e.name}: TensorRT {m.tensorrt_version}, sm {m.compute_capability}, {m.precision}, "
          f"{m.engine_bytes / 1e6:.1f} MB, built in {m.build_seconds} s, max batch {m.max_batch}")
EOF
ENG_RC=${PIPESTATUS[0]}

TEST_RC=0
if [ "${TRT_CHECK_SKIP_TESTS:-0}" = 1 ]; then  # gpu_check.sh already ran tests/gpu
  say "== GPU tests: skipped (TRT_CHECK_SKIP_TESTS=1)"
else
  say "== GPU tests (tests/gpu/test_tensorrt_engines.py)"
  timeout 420 "$PY" -m pytest tests/gpu/test_tensorrt_engines.py -q -rs -p no:cacheprovider 2>&1 | tail -n 15 \
    | tee -a "$LOG"
  TEST_RC=${PIPESTATUS[0]}
fi

QUICK="--quick"
[ "${TRT_CHECK_FULL:-0}" = 1 ] && QUICK=""
say "== benchmark (bench.py $QUICK --build-dir $BUILD)"
timeout 900 "$PY" benchmarks/bench.py $QUICK --build-dir "$BUILD" --backends onnxruntime,tensorrt \
  --out "$OUTDIR/bench" --no-progress 2>&1 | tail -n 25 | tee -a "$LOG"
BENCH_RC=${PIPESTATUS[0]}

END=$(date +%s)
{
  echo
  echo "================ TensorRT summary ================"
  "$PY" - "$OUTDIR/bench/bench.json" <<'EOF'
import json, sys
try:
    report = json.load(open(sys.argv[1]))
except (OSError, ValueError) as exc:
    print(f"no benchmark results ({exc})")
    sys.exit(0)
print(f"{'row':<16} {'FPS':>8} {'box AP':>8} {'kpt AP':>8}")
for r in report["rows"]:
    if "error" in r:
        print(f"{r['name']:<16} failed: {r['error'][:90]}")
        continue
    ap = r.get("ap", {})
    fmt = lambda v: f"{100 * v:8.1f}" if isinstance(v, (int, float)) else f"{'-':>8}"
    print(f"{r['name']:<16} {r.get('fps', 0):8.1f} {fmt(ap.get('bbox_AP'))} {fmt(ap.get('keypoints_AP'))}")
for s in report.get("skipped", []):
    print(f"{s['name']:<16} skipped: {s['reason'][:90]}")
EOF
  echo "edgepose build : rc=$BUILD_RC    engines: rc=$ENG_RC    GPU tests: rc=$TEST_RC    bench: rc=$BENCH_RC"
  echo "elapsed        : $((END - START)) s"
  echo "log            : $LOG"
} | tee -a "$LOG"

for rc in $BUILD_RC $ENG_RC $TEST_RC $BENCH_RC; do
  [ "$rc" -ne 0 ] && exit 1
done
exit 0
