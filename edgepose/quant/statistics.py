"""Activation statistics and INT8 ranges: one batched pass, vectorised NumPy.

:func:`collect_statistics` runs the FP32 graph once with every float activation as an
output and keeps, per tensor, its min/max and a histogram of the non-zero ``|x|``
(:class:`TensorStats`).  Feeds are regrouped into batches of up to ``batch_size`` samples
(a fixed batch-1 graph is run as a copy whose batch is dynamic when every op is per-sample),
and each batch updates each histogram with a handful of whole-array NumPy operations.  The
bin grid is fixed by the first *sample* and only ever grows by whole bins or merges bin
pairs, so batching gives the same histograms as feeding one sample at a time (apart from
the rare value that lands exactly on the upper edge of the grid: one count, one bin up).

:func:`compute_ranges` derives the symmetric clipping threshold ``amax`` with ``minmax``,
``percentile`` (99.99), ``entropy`` (KL divergence, TensorRT's method) or ``mse``; entropy
and MSE evaluate all their candidate thresholds at once from cumulative sums.  One
collection serves every method and every mixed-precision variant of the budget search.

Pure ONNX / ONNX Runtime / NumPy: no pipeline or backends imports.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.errors import CalibrationError
from edgepose.onnx_graph import load_model, real_inputs
from edgepose.ort_session import create_session
from edgepose.progress import bar

NO_FEEDS = ("the calibration reader yielded no feeds; pass --calib DIR (a folder of 50-500 images like the "
            "deployment scene), a video file, a COCO annotation .json, or --calib synthetic")
# ops whose output sample n depends only on input sample n (a batch-1 graph of these may run batched)
PER_SAMPLE_OPS = frozenset({
    "Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish",
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Abs", "Neg", "Exp", "Sqrt", "Pow", "Identity", "Dropout",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "DepthToSpace",
    "SpaceToDepth", "Concat", "Softmax"})
ACTIVATION_BYTES = 1 << 30  # batch size cap: all activations of one batch stay below ~1 GiB


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

    def add(self, values: np.ndarray, num_bins: int, first_amax: float | None = None, scratch=None):
        """Count ``values`` (any shape: one sample or a batch).  ``first_amax``: the largest
        non-zero |x| of the first sample, which sets the bin width on the first call (default:
        that of ``values``), so a batch starts the same grid as its first sample would.
        ``scratch``: a :class:`Scratch` whose buffers are reused (fresh large arrays cost
        more in page faults than the arithmetic)."""
        values = np.asarray(values)
        if values.size == 0:
            return
        lo, hi = float(values.min()), float(values.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN/inf: count the finite values only
            values = values[np.isfinite(values)]
            if values.size == 0:
                return
            lo, hi = float(values.min()), float(values.max())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        scratch = scratch or Scratch()
        a = scratch.get("f", np.float32, values.size)
        as_is = lo >= 0.0 and values.dtype == np.float32  # |x| = x (ReLU outputs): no abs pass
        if not as_is:
            np.abs(values.ravel(), out=a)
        nonzero = int(np.count_nonzero(values if as_is else a.view(np.int32)))  # +0.0: all-zero bits
        self.zeros += int(a.size - nonzero)
        if nonzero == 0:
            return
        if self.width <= 0.0:
            self.width = (first_amax if first_amax else max(abs(lo), abs(hi))) / num_bins
        self._grow(int(np.ceil(max(abs(lo), abs(hi)) / self.width)), num_bins)
        idx = scratch.get("i", np.int64, a.size)  # |x| / width in float32, truncated (= floor for |x| >= 0)
        np.divide(values.ravel() if as_is else a, np.float32(self.width), out=idx, dtype=np.float32,
                  casting="unsafe")
        counts = np.bincount(idx, minlength=len(self.hist))
        if len(counts) > len(self.hist):  # values exactly on the top edge go to the last bin
            counts[len(self.hist) - 1] += counts[len(self.hist):].sum()
            counts = counts[:len(self.hist)]
        counts[0] -= a.size - nonzero  # the zeros went to bin 0
        self.hist += counts

    def _grow(self, need: int, num_bins: int):
        """Extend with same-width bins up to ``need``; merge pairs while longer than 4x."""
        nb = len(self.hist)
        if need <= nb:
            return
        self.hist = np.concatenate([self.hist, np.zeros(need - nb, np.int64)])
        while len(self.hist) > 4 * num_bins:
            h = self.hist
            if len(h) % 2:
                h = np.concatenate([h, [0]])
            self.hist = h.reshape(-1, 2).sum(axis=1)
            self.width *= 2.0


class Scratch:
    """Reusable flat work buffers, one per key, grown on demand."""

    def __init__(self):
        self._buffers = {}

    def get(self, key: str, dtype, size: int) -> np.ndarray:
        buf = self._buffers.get(key)
        if buf is None or buf.size < size:
            buf = self._buffers[key] = np.empty(size, dtype)
        return buf[:size]


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


def batch_agnostic(model) -> bool:
    """True when every node computes each batch sample from that sample alone (so a graph
    exported with batch 1 gives the same per-sample results run with batch N)."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in PER_SAMPLE_OPS:
            return False
        if node.op_type in ("Concat", "Softmax"):
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1 if node.op_type == "Concat" else -1)
            if axis == 0:
                return False
        if node.op_type not in ("Conv", "ConvTranspose", "BatchNormalization", "PRelu"):
            for name in node.input:  # a constant operand must not carry a batch of its own
                arr = consts.get(name)
                if arr is not None and arr.size > 1 and arr.ndim >= 4 and arr.shape[0] != 1:
                    return False
    return True


def _stats_graph(model, names, dynamic_batch: bool):
    """Copy of ``model`` with ``names`` as extra outputs (and a dynamic batch dim)."""
    import onnx

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    if dynamic_batch:
        del augmented.graph.value_info[:]
        for vi in list(real_inputs(augmented.graph)) + list(augmented.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if len(dims):
                dims[0].Clear()
                dims[0].dim_param = "calib_batch"
    return augmented


def _batch_dim(model):
    """The first input's batch: an int when fixed, None when dynamic (or unknown)."""
    inputs = real_inputs(model.graph)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    return dims[0].dim_value if len(dims) and dims[0].HasField("dim_value") else None


def _regroup(feeds: list, batch: int):
    """Yield feeds of up to ``batch`` samples, concatenating consecutive feeds on axis 0."""
    part, count = [], 0
    for feed in feeds:
        part.append(feed)
        count += len(next(iter(feed.values())))
        if count >= batch:
            yield _concat(part)
            part, count = [], 0
    if part:
        yield _concat(part)


def _concat(part: list) -> dict:
    if len(part) == 1:
        return part[0]
    return {k: np.ascontiguousarray(np.concatenate([f[k] for f in part], axis=0)) for k in part[0]}


def collect_statistics(model, reader, tensors=None, num_bins: int = 2048, progress: bool = True,
                       threads=None, batch_size: int = 16, on_outputs=None) -> dict:
    """Run ``model`` (ModelProto or path) on every feed of ``reader`` (a FeedReader, an
    ORT CalibrationDataReader or a list of feeds) and return ``{tensor: TensorStats}`` for
    every float activation (or just ``tensors``).  Feeds are run in batches of up to
    ``batch_size`` samples (fewer when one batch's activations would pass ~1 GiB) when the
    batch dim is dynamic or the graph is per-sample (:func:`batch_agnostic`); results do
    not depend on the batching (see the module docstring).  ``on_outputs``: called with
    ``{graph output: array}`` of every batch, in feed order (the model's own results, e.g. a
    detector's heads, so the caller need not run the model again for them)."""
    model = load_model(model)
    names = list(tensors) if tensors is not None else _float_activations(model)
    fixed = _batch_dim(model)
    dynamic = fixed is None or (fixed == 1 and batch_size > 1 and batch_agnostic(model))
    session = create_session(_stats_graph(model, names, dynamic and fixed is not None), threads=threads,
                             error=CalibrationError, what="the model to calibrate (with every activation as an output)")
    out_names = [o.name for o in session.get_outputs()]
    wanted = set(names)
    own = [o.name for o in model.graph.output] if on_outputs is not None else []
    feeds = list(reader) if not hasattr(reader, "get_next") else _drain(reader)
    if not feeds:
        raise CalibrationError(NO_FEEDS)
    stats: dict = {}
    scratch = Scratch()
    first = _update(stats, session, out_names, feeds[0], wanted, num_bins, scratch, own, on_outputs)
    batch = max(1, min(int(batch_size), ACTIVATION_BYTES // max(1, first))) if dynamic else 1
    remaining = sum(len(next(iter(f.values()))) for f in feeds[1:])
    for feed in bar(_regroup(feeds[1:], batch), total=-(-remaining // batch), enabled=progress, unit="batch",
                    desc=f"calibrating (batches of {batch})"):  # lazy: the batches are not all held at once
        _update(stats, session, out_names, feed, wanted, num_bins, scratch, own, on_outputs)
    return stats


def _update(stats, session, out_names, feed, wanted, num_bins, scratch, own=(), on_outputs=None) -> int:
    """Run one feed, add its activations (and hand the graph's own outputs ``own`` to
    ``on_outputs``); returns the activation bytes per sample."""
    values = session.run(out_names, feed)
    if on_outputs is not None:
        by_name = dict(zip(out_names, values))
        on_outputs({name: by_name[name] for name in own})
    total, samples = 0, max(1, len(next(iter(feed.values()))))
    for name, value in zip(out_names, values):
        if name not in wanted or not isinstance(value, np.ndarray) or value.dtype.kind != "f" or value.size == 0:
            continue
        total += value.nbytes
        st = stats.get(name)
        first_amax = None
        if st is None:
            st = stats[name] = TensorStats(float("inf"), float("-inf"), np.zeros(num_bins, np.int64), 0.0)
        if st.width <= 0.0:  # the grid starts from the first sample with a non-zero value
            first_amax = _first_nonzero_amax(value)
        st.add(value, num_bins, first_amax, scratch)
    return total // samples


def _first_nonzero_amax(value: np.ndarray):
    """Largest finite |x| of the first sample (of ``value``'s batch) that has a non-zero one."""
    for sample in (value if value.ndim else value[None]):
        a = np.abs(sample[np.isfinite(sample)])
        if a.size and a.max() > 0:
            return float(a.max())
    return None


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
