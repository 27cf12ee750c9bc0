"""StageTimer keeps bounded memory over long runs (the soak creep) while its statistics stay
exact up to the reservoir size and close to NumPy's over the whole run beyond it."""
import gc
import tracemalloc

import numpy as np
import pytest

from edgepose.pipeline.timing import RESERVOIR, STAGES, LatencySeries, StageTimer


def _frames(timer, values):
    for v in values:
        timer.merge_frame({name: float(v) + k for k, name in enumerate(STAGES)})


def test_exact_while_within_the_reservoir():
    values = np.random.default_rng(0).gamma(2.0, 3.0, size=300)
    timer = StageTimer(reservoir=300)
    _frames(timer, values)
    stats = timer.stats()
    for k, name in enumerate(STAGES):
        ref = values + k
        st = stats[name]
        assert st.count == 300
        assert (st.mean, st.min, st.max) == pytest.approx((ref.mean(), ref.min(), ref.max()), rel=1e-12)
        assert (st.p50, st.p90, st.p99) == pytest.approx(tuple(np.percentile(ref, [50, 90, 99])), rel=1e-12)
    total = values * len(STAGES) + sum(range(len(STAGES)))
    assert stats["total"].p90 == pytest.approx(np.percentile(total, 90), rel=1e-12)


def test_beyond_the_reservoir_count_mean_min_max_exact_percentiles_close():
    values = np.random.default_rng(1).uniform(0.0, 100.0, size=50_000)
    series = LatencySeries(capacity=2048, seed=3)
    for v in values:
        series.add(v)
    st = series.stats()
    assert len(series.kept) == 2048 and st.count == 50_000
    assert (st.mean, st.min, st.max) == pytest.approx((values.mean(), values.min(), values.max()), rel=1e-9)
    # a uniform sample of 2048: the standard error of p50 is ~1.1 points of this 0..100 range
    # and smaller in the tail; 4 points leaves > 3 standard errors for every percentile
    ref = np.percentile(values, [50, 90, 99])
    assert np.abs(np.array([st.p50, st.p90, st.p99]) - ref).max() < 4.0


def test_memory_stays_flat_over_a_long_run():
    """Frames past the reservoir add nothing: the second 10,000 frames grow traced memory by
    well under one frame's worth of stored samples per 100 frames (keeping every sample grew
    ~200 B/frame, 2 MB here)."""
    timer = StageTimer()
    tracemalloc.start()
    try:
        _frames(timer, np.arange(RESERVOIR + 2000, dtype=np.float64) % 17)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        _frames(timer, np.arange(10_000, dtype=np.float64) % 13)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 16 * 1024, f"StageTimer grew {after - before} bytes over 10,000 frames"
    assert timer.stats()["pose"].count == RESERVOIR + 12_000
