"""Kept for old imports: per-stage timing lives in :mod:`edgepose.pipeline.timing` (the runtime
times itself and must not import eval)."""
from edgepose.pipeline.timing import (  # noqa: F401  (re-exported)
    RESERVOIR, STAGES, LatencySeries, LatencyStats, StageTimer, format_latency_table,
)
