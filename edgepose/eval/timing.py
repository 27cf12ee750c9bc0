"""Per-stage wall-clock timing: ``StageTimer`` records, ``LatencyStats`` summarises.

    timer = StageTimer()
    with timer("detector"):
        outputs = runner.infer(feed)
    timer.last            # {"detector": 12.3}  (milliseconds, current frame)
    timer.stats()         # {"detector": LatencyStats(...)}  over every frame so far

Pure Python + NumPy; imports no deep-learning framework.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

# canonical order of the pipeline stages in tables
STAGES = ("preprocess", "detector", "decode", "crop", "pose", "postprocess")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of a list of latencies in milliseconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float

    @classmethod
    def from_samples(cls, samples_ms) -> "LatencyStats":
        values = np.asarray(list(samples_ms), dtype=np.float64)
        if values.size == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan, nan)
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(int(values.size), float(values.mean()), float(p50), float(p90), float(p99),
                   float(values.min()), float(values.max()))


class _Stage:
    __slots__ = ("timer", "name", "start")

    def __init__(self, timer, name):
        self.timer, self.name, self.start = timer, name, 0.0

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timer.add(self.name, (time.perf_counter() - self.start) * 1e3)
        return False


class StageTimer:
    """Collects per-stage durations (ms).  ``with timer("pose"): ...`` times one stage;
    a stage entered several times within one frame accumulates.  Call :meth:`new_frame`
    before each frame so :attr:`last` holds only that frame's stages."""

    def __init__(self):
        self.samples: dict[str, list] = {}
        self.last: dict[str, float] = {}
        self.frame_times: list = []  # total ms per frame
        self._frame_open = False

    def __call__(self, name: str) -> _Stage:
        return _Stage(self, name)

    def new_frame(self):
        self._close_frame()
        self.last = {}
        self._frame_open = True

    def _close_frame(self):
        if self._frame_open and self.last:
            for name, value in self.last.items():
                self.samples.setdefault(name, []).append(value)
            self.frame_times.append(sum(self.last.values()))
        self._frame_open = False

    def add(self, name: str, ms: float):
        if not self._frame_open:
            self._frame_open = True
            self.last = {}
        self.last[name] = self.last.get(name, 0.0) + float(ms)

    def end_frame(self) -> dict:
        """Close the current frame and return its stage times (ms)."""
        last = dict(self.last)
        self._close_frame()
        return last

    def stats(self) -> dict:
        """``{stage: LatencyStats}`` over every closed frame, plus ``"total"``."""
        names = [s for s in STAGES if s in self.samples] + sorted(set(self.samples) - set(STAGES))
        out = {name: LatencyStats.from_samples(self.samples[name]) for name in names}
        if self.frame_times:
            out["total"] = LatencyStats.from_samples(self.frame_times)
        return out

    def merge_frame(self, stage_ms: dict):
        """Record one frame's already-measured stage times (e.g. ``PoseResult.timings``)."""
        self.new_frame()
        for name, value in stage_ms.items():
            self.add(name, value)
        self.end_frame()


def format_latency_table(stats: dict, fps: float | None = None) -> str:
    """A fixed-width table: stage, count, mean, p50, p90, p99 (ms), then FPS."""
    header = f"{'stage':<12} {'n':>6} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9}   (ms)"
    lines = [header, "-" * len(header)]
    for name, st in stats.items():
        lines.append(f"{name:<12} {st.count:>6d} {st.mean:>9.2f} {st.p50:>9.2f} {st.p90:>9.2f} {st.p99:>9.2f}")
    if fps is not None:
        lines.append(f"FPS: {fps:.2f}")
    return "\n".join(lines)
