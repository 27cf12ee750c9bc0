"""Calibration statistics and INT8 ranges -- ONNX in, numbers out (no pipeline, no image I/O).

The feeds (lists of ``{input name: array}``) are made by the caller; edgepose's own flows
make them with the runtime's preprocessing in :mod:`edgepose.workflows.calibration_feeds`.

Ranges: :func:`collect_statistics` runs the FP32 graph once with every float activation as
an output and keeps, per tensor, its min/max and a histogram of ``|x|``; :func:`compute_ranges`
derives the symmetric clipping threshold ``amax`` with ``minmax``, ``percentile`` (99.99),
``entropy`` (KL divergence, TensorRT's method) or ``mse``.  One collection serves every
method and every mixed-precision variant the accuracy-budget search builds.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from edgepose.errors import CalibrationError, UsageError
from edgepose.onnx_graph import initializer_names, load_model, producers, real_inputs
from edgepose.ort_session import create_session
from edgepose.progress import bar

log = logging.getLogger("edgepose")

METHODS = ("entropy", "minmax", "percentile", "mse")
HOW = ("pass --calib DIR (a folder of 50-500 images like the deployment scene), a video file, "
       "a COCO annotation .json, or --calib synthetic")


# ============================================================================ hashing
def calibration_hash(images, names=None) -> str:
    """SHA-256 over the ordered images (shape, dtype and pixels) and their names."""
    digest = hashlib.sha256()
    for i, image in enumerate(images):
        arr = np.ascontiguousarray(image)
        name = names[i] if names is not None else str(i)
        digest.update(f"{name}|{arr.shape}|{arr.dtype}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


class FeedReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a list of feed dicts."""

    def __init__(self, feeds: list):
        from onnxruntime.quantization import CalibrationDataReader

        # register as a virtual subclass of ORT's reader without importing ORT at module load
        if not isinstance(self, CalibrationDataReader):
            CalibrationDataReader.register(type(self))
        self.feeds = list(feeds)
        self._it = iter(self.feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.feeds)

    def __len__(self):
        return len(self.feeds)

    def __iter__(self):
        return iter(self.feeds)


# ============================================================================ statistics
@dataclass
class TensorStats:
    """min/max and a histogram of the non-zero |x| over ``[0, edges[-1]]`` (equal-width bins).

    Exact zeros (half of every ReLU output) are counted apart: INT8 represents them exactly
    at any scale, and left in the first bin they dominate the KL divergence and drag the
    entropy threshold far down."""

    lo: float
    hi: float
    hist: np.ndarray
    width: float
    zeros: int = 0

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def edges(self) -> np.ndarray:
        return np.arange(len(self.hist) + 1, dtype=np.float64) * self.width

    def add(self, values: np.ndarray, num_bins: int):
        a = np.abs(values.ravel().astype(np.float32, copy=False))
        a = a[np.isfinite(a)]
        if a.size == 0:
            return
        self.lo = min(self.lo, float(values.min()))
        self.hi = max(self.hi, float(values.max()))
        nonzero = a[a != 0]
        self.zeros += int(a.size - nonzero.size)
        a = nonzero
        if a.size == 0:
            return
        amax = float(a.max())
        if self.width <= 0.0:
            self.width = amax / num_bins
        nb = len(self.hist)
        need = int(np.ceil(amax / self.width))  # the top value lands in the last bin
        if need > nb:  # extend with same-width bins; merge pairs when it grows too long
            self.hist = np.concatenate([self.hist, np.zeros(need - nb, np.int64)])
            while len(self.hist) > 4 * num_bins:
                h = self.hist
                if len(h) % 2:
                    h = np.concatenate([h, [0]])
                self.hist = h.reshape(-1, 2).sum(axis=1)
                self.width *= 2.0
        idx = np.minimum((a / self.width).astype(np.int64), len(self.hist) - 1)
        self.hist += np.bincount(idx, minlength=len(self.hist))


def _float_activations(model) -> list:
    """Names of float tensors computed by the graph (node outputs and graph inputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    names = [i.name for i in real_inputs(model.graph)]
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape", "QuantizeLinear"):
            continue
        names.extend(o for o in node.output if o)
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    seen, out = set(), []
    for name in names:
        if name not in seen and types.get(name, onnx.TensorProto.FLOAT) in float_types:
            seen.add(name)
            out.append(name)
    return out


def collect_statistics(model, reader, tensors=None, num_bins: int = 2048, progress: bool = True,
                       threads=None) -> dict:
    """Run ``model`` (ModelProto or path) on every feed of ``reader`` (a FeedReader, an
    ORT CalibrationDataReader or a list of feeds) and return ``{tensor: TensorStats}`` for
    every float activation (or just ``tensors``)."""
    import onnx

    model = load_model(model)
    names = list(tensors) if tensors is not None else _float_activations(model)
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = create_session(augmented, threads=threads, error=CalibrationError,
                             what="the model to calibrate (with every activation as an output)")
    out_names = [o.name for o in session.get_outputs()]
    wanted = set(names)
    stats: dict = {}
    feeds = list(reader) if not hasattr(reader, "get_next") else _drain(reader)
    if not feeds:
        raise CalibrationError("the calibration reader yielded no feeds; " + HOW)
    for feed in bar(feeds, total=len(feeds), desc="calibrating", enabled=progress, unit="img"):
        values = session.run(out_names, feed)
        for name, value in zip(out_names, values):
            if name not in wanted or not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                continue
            st = stats.get(name)
            if st is None:
                st = stats[name] = TensorStats(float("inf"), float("-inf"), np.zeros(num_bins, np.int64), 0.0)
            st.add(value, num_bins)
    return stats


def _drain(reader) -> list:
    if hasattr(reader, "rewind"):
        reader.rewind()
    feeds = []
    while True:
        item = reader.get_next()
        if item is None:
            break
        feeds.append(item)
    if hasattr(reader, "rewind"):
        reader.rewind()
    return feeds


# ============================================================================ ranges
def _amax_percentile(st: TensorStats, percentile: float) -> float:
    total = st.hist.sum()
    if total == 0 or st.width == 0:
        return st.absmax
    cdf = np.cumsum(st.hist) / total
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(st.absmax, (idx + 1) * st.width))


def _amax_entropy(st: TensorStats, levels: int = 128, max_candidates: int = 384) -> float:
    """TensorRT's KL calibration on the |x| histogram: the threshold whose 128-level
    quantized distribution is closest (KL divergence) to the clipped reference."""
    hist = st.hist.astype(np.float64)
    nb = len(hist)
    if st.width == 0 or hist.sum() == 0 or nb <= levels:
        return st.absmax
    last = int(np.nonzero(hist)[0][-1]) + 1
    hist, nb = hist[:last], last
    if nb <= levels:
        return st.absmax
    step = max(1, (nb - levels) // max_candidates)
    candidates = list(range(levels, nb + 1, step))
    if candidates[-1] != nb:
        candidates.append(nb)
    best, best_i = np.inf, nb
    eps = 1e-4
    for i in candidates:
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        starts = (np.arange(levels) * i) // levels
        sums = np.add.reduceat(hist[:i], starts)
        nonzero = (hist[:i] > 0).astype(np.float64)
        counts = np.add.reduceat(nonzero, starts)
        per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        owner = np.repeat(np.arange(levels), np.diff(np.append(starts, i)))
        q = per_bin[owner] * nonzero
        # smooth zeros of q (in counts, as MXNet does) where p has mass, to keep KL finite
        q = np.where((q == 0) & (p > 0), eps, q)
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        p, q = p / ps, q / qs
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best:
            best, best_i = kl, i
    return float(min(st.absmax, best_i * st.width))


def _amax_mse(st: TensorStats, qmax: int = 127, num_candidates: int = 256) -> float:
    """Threshold minimising the expected squared error of symmetric INT8 quantization
    (clipping error above it + rounding error below it), from the |x| histogram."""
    hist = st.hist.astype(np.float64)
    if st.width == 0 or hist.sum() == 0:
        return st.absmax
    last = int(np.nonzero(hist)[0][-1]) + 1
    hist = hist[:last]
    centers = (np.arange(last) + 0.5) * st.width
    top = min(st.absmax, last * st.width)
    cands = np.linspace(top / num_candidates, top, num_candidates)
    errs = np.empty(len(cands))
    for k, t in enumerate(cands):
        scale = t / qmax
        q = np.clip(np.round(centers / scale), -qmax, qmax) * scale
        # bin centres alone under-count rounding noise when bins are coarser than a step
        noise = np.minimum(st.width, scale) ** 2 / 12.0
        errs[k] = float(np.sum(hist * ((q - centers) ** 2 + np.where(centers <= t, noise, 0.0))))
    return float(cands[int(np.argmin(errs))])


def head_tensors(model) -> list:
    """The tensors that keep their full observed range whatever the method: the graph
    outputs and the activations feeding the layers that produce them (a head's last hidden
    layer).  A 1x1 head conv maps those activations linearly to box sizes / offsets /
    heatmap peaks, so clipping them clips the very values decoding reads -- KL calibration
    does exactly that to a width/height head (its large values are rare)."""
    graph = model.graph
    inits = initializer_names(graph)
    producer = producers(graph)
    names = [o.name for o in graph.output]
    for out in graph.output:
        node = producer.get(out.name)
        if node is not None and node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            names.extend(i for i in node.input[:1] if i and i not in inits)
    return list(dict.fromkeys(names))


def compute_ranges(stats: dict, method: str = "entropy", percentile: float = 99.99, full_range=()) -> dict:
    """``{tensor: amax}`` (the symmetric range is ``[-amax, amax]``) for ``method``.

    ``full_range``: tensors that always get their observed |max| -- :func:`head_tensors`:
    their extremes are what decoding reads (heatmap peaks, box sizes)."""
    full_range = set(full_range)
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    ranges = {}
    for name, st in stats.items():
        if method == "minmax" or name in full_range:
            amax = st.absmax
        elif method == "percentile":
            amax = _amax_percentile(st, percentile)
        elif method == "entropy":
            amax = _amax_entropy(st)
        else:
            amax = _amax_mse(st)
        ranges[name] = float(amax) if np.isfinite(amax) else 0.0
    return ranges


def summarize_ranges(ranges: dict, stats: dict | None = None) -> dict:
    """Compact summary for report.json: counts, quantiles of amax, most clipped tensors."""
    values = np.array(list(ranges.values()), dtype=np.float64) if ranges else np.zeros(1)
    summary = {
        "tensors": len(ranges),
        "amax_min": float(values.min()), "amax_median": float(np.median(values)),
        "amax_max": float(values.max()),
    }
    if stats:
        clip = []
        for name, amax in ranges.items():
            st = stats.get(name)
            if st is not None and st.absmax > 0:
                clip.append((amax / st.absmax, name))
        clip.sort()
        summary["most_clipped"] = [{"tensor": n, "amax_over_absmax": round(r, 4)} for r, n in clip[:10]]
    return summary
