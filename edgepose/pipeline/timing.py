"""Per-stage wall-clock timing: ``StageTimer`` records, ``LatencyStats`` summarises.

    timer = StageTimer()
    with timer("detector"):
        outputs = runner.infer(feed)
    timer.last            # {"detector": 12.3}  (milliseconds, current frame)
    timer.stats()         # {"detector": LatencyStats(...)}  over every frame so far

Memory stays bounded however long a run lasts: count, mean, min and max are exact running
values; percentiles come from the first :data:`RESERVOIR` samples of a stage (exact up to
there) and then from a uniform random sample of that size over all of them (reservoir
sampling).  Keeping every sample made a camera/stream run grow by ~0.1 MiB per 500 frames.

Pure Python + NumPy; imports no deep-learning framework.
"""
from __future__ import annotations

import random
import time
from array import array
from dataclasses import dataclass

import numpy as np

# canonical order of the pipeline stages in tables
STAGES = ("preprocess", "detector", "decode", "crop", "pose", "postprocess")
# samples kept per stage for percentiles (8 bytes each): 8192 frames exact, then a uniform sample
RESERVOIR = 8192


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


class LatencySeries:
    """Latencies of one stage: exact running count/sum/min/max, percentiles from a bounded
    uniform sample (exact while ``count <= capacity``; Vitter's algorithm R beyond)."""

    __slots__ = ("capacity", "count", "total", "low", "high", "kept", "_rng")

    def __init__(self, capacity: int = RESERVOIR, seed: int = 0):
        self.capacity = max(1, int(capacity))
        self.count, self.total = 0, 0.0
        self.low, self.high = float("inf"), float("-inf")
        self.kept = array("d")
        self._rng = random.Random(seed)

    def add(self, ms: float):
        ms = float(ms)
        self.count += 1
        self.total += ms
        self.low, self.high = min(self.low, ms), max(self.high, ms)
        if len(self.kept) < self.capacity:
            self.kept.append(ms)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self.capacity:
                self.kept[slot] = ms

    def __len__(self):
        return self.count

    def stats(self) -> LatencyStats:
        if self.count == 0:
            return LatencyStats.from_samples(())
        p50, p90, p99 = np.percentile(np.frombuffer(self.kept, dtype=np.float64), [50, 90, 99])
        return LatencyStats(self.count, self.total / self.count, float(p50), float(p90), float(p99),
                            self.low, self.high)


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


class FrameClock:
    """Stage times (ms) of one frame, nothing kept beyond it: ``with clock("pose"): ...``;
    :attr:`timings` maps stage -> ms (a stage entered twice accumulates).  Each pipeline stage
    keeps its own clock, so stages running in different threads never share one."""

    __slots__ = ("timings",)

    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> "_Stage":
        return _Stage(self, name)

    def add(self, name: str, ms: float):
        self.timings[name] = self.timings.get(name, 0.0) + float(ms)


class StageTimer:
    """Collects per-stage durations (ms).  ``with timer("pose"): ...`` times one stage;
    a stage entered several times within one frame accumulates.  Call :meth:`new_frame`
    before each frame so :attr:`last` holds only that frame's stages."""

    def __init__(self, reservoir: int = RESERVOIR):
        self.reservoir = reservoir
        self.samples: dict[str, LatencySeries] = {}
        self.last: dict[str, float] = {}
        self.frame_times = LatencySeries(reservoir)  # total ms per frame
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
                if name not in self.samples:
                    self.samples[name] = LatencySeries(self.reservoir, seed=len(self.samples) + 1)
                self.samples[name].add(value)
            self.frame_times.add(sum(self.last.values()))
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
        out = {name: self.samples[name].stats() for name in names}
        if self.frame_times.count:
            out["total"] = self.frame_times.stats()
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
