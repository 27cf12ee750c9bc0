"""INT8 ranges from :class:`edgepose.quant.statistics.TensorStats`: ``{tensor: amax}``.

Methods: ``minmax`` (largest |x|), ``percentile`` (99.99 of |x|), ``entropy`` (TensorRT's
KL-divergence calibration) and ``mse`` (least expected squared quantization error).  Entropy
and MSE score every candidate threshold at once (whole-array NumPy over candidates), with
the same arithmetic per candidate as a loop over them.
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError
from edgepose.onnx_graph import initializer_names, producers

METHODS = ("entropy", "minmax", "percentile", "mse")


def _amax_percentile(st, percentile: float) -> float:
    total = st.hist.sum()
    if total == 0 or st.width == 0:
        return st.absmax
    cdf = np.cumsum(st.hist) / total
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(st.absmax, (idx + 1) * st.width))


def _entropy_candidates(nb: int, levels: int, max_candidates: int) -> np.ndarray:
    step = max(1, (nb - levels) // max_candidates)
    candidates = list(range(levels, nb + 1, step))
    if candidates[-1] != nb:
        candidates.append(nb)
    return np.array(candidates, dtype=np.int64)


def _amax_entropy(st, levels: int = 128, max_candidates: int = 384, eps: float = 1e-4) -> float:
    """TensorRT's KL calibration on the |x| histogram: the threshold (``i`` bins) whose
    ``levels``-level quantized distribution is closest (KL divergence) to the clipped
    reference ``p`` (bins ``< i``, the tail added to the last one).  ``q`` spreads each
    level's count evenly over its non-empty bins; an empty bin where ``p`` has mass gets
    ``eps`` counts (as MXNet does).  With the cumulative sums of ``h``, ``h log h`` and the
    non-empty bins, ``KL = sum(p log p)/P - log P - sum(p log q)/P + log Q`` (``P``, ``Q``:
    totals) is evaluated for all candidates in one go."""
    hist = st.hist.astype(np.float64)
    if st.width == 0 or hist.sum() == 0 or len(hist) <= levels:
        return st.absmax
    nb = int(np.nonzero(hist)[0][-1]) + 1
    hist = hist[:nb]
    if nb <= levels:
        return st.absmax
    cands = _entropy_candidates(nb, levels, max_candidates)
    total = hist.sum()
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    cum_nonempty = np.concatenate([[0.0], np.cumsum(hist > 0)])
    hlogh = np.zeros_like(hist)
    np.multiply(hist, np.log(hist, where=hist > 0, out=np.zeros_like(hist)), out=hlogh)
    cum_hlogh = np.concatenate([[0.0], np.cumsum(hlogh)])
    bounds = (np.arange(levels + 1)[None, :] * cands[:, None]) // levels  # level g: bins [bounds[g], bounds[g+1])
    sums = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    counts = cum_nonempty[bounds[:, 1:]] - cum_nonempty[bounds[:, :-1]]
    per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    log_q = np.log(per_bin, out=np.zeros_like(per_bin), where=per_bin > 0)
    tail = total - cum[cands]
    last = hist[cands - 1]
    p_last = last + tail
    sum_plogp = cum_hlogh[cands - 1] + p_last * np.log(p_last, where=p_last > 0, out=np.zeros_like(p_last))
    smoothed = (last == 0) & (tail > 0)  # the last bin is empty in q but holds the tail in p
    sum_plogq = (sums * log_q).sum(axis=1) + np.where(smoothed, tail * np.log(eps),
                                                      np.where(last > 0, tail * log_q[:, -1], 0.0))
    q_total = cum[cands] + np.where(smoothed, eps, 0.0)
    kl = sum_plogp / total - np.log(total) - sum_plogq / total + np.log(q_total)
    best_i = int(cands[int(np.argmin(kl))])
    return float(min(st.absmax, best_i * st.width))


def _amax_mse(st, qmax: int = 127, num_candidates: int = 256, chunk: int = 64) -> float:
    """Threshold minimising the expected squared error of symmetric INT8 quantization
    (clipping error above it + rounding error below it), from the |x| histogram."""
    hist = st.hist.astype(np.float64)
    if st.width == 0 or hist.sum() == 0:
        return st.absmax
    filled = np.nonzero(hist)[0]  # empty bins add exactly 0 to every candidate's error: left out
    last = int(filled[-1]) + 1
    hist = hist[filled]
    centers = (filled + 0.5) * st.width
    top = min(st.absmax, last * st.width)
    cands = np.linspace(top / num_candidates, top, num_candidates)
    errs = np.empty(len(cands))
    below = np.searchsorted(centers, cands, side="right")  # bins with centre <= candidate
    buf = np.empty((min(chunk, len(cands)), len(centers)))
    for start in range(0, len(cands), chunk):  # bounded memory: chunk x bins at a time, in place
        t = cands[start:start + chunk, None]
        scale = t / qmax
        err = buf[:len(t)]
        np.divide(centers, scale, out=err)  # q = clip(round(c / scale)) * scale; err = (q - c)^2
        np.round(err, out=err)
        np.clip(err, -qmax, qmax, out=err)
        err *= scale
        err -= centers
        np.square(err, out=err)
        # bin centres alone under-count rounding noise when bins are coarser than a step
        noise = np.minimum(st.width, scale[:, 0]) ** 2 / 12.0
        for row, (k, extra) in enumerate(zip(below[start:start + chunk], noise)):
            err[row, :k] += extra
        err *= hist
        errs[start:start + chunk] = err.sum(axis=1)
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


def summarize_ranges(ranges: dict, stats: dict | None = None, quantized=None) -> dict:
    """Compact summary for report.json: counts, quantiles of amax, most clipped tensors.

    ``quantized``: the tensors the Q/DQ graph really quantizes (:func:`quantized_tensors`);
    ``most_clipped`` then lists only those -- a tensor that stays float (an SE sigmoid, a DCN
    mask, a conv output before its ReLU) loses nothing to its range, however small."""
    values = np.array(list(ranges.values()), dtype=np.float64) if ranges else np.zeros(1)
    summary = {
        "tensors": len(ranges),
        "amax_min": float(values.min()), "amax_median": float(np.median(values)),
        "amax_max": float(values.max()),
    }
    if quantized is not None:
        quantized = set(quantized)
        summary["quantized_tensors"] = sum(name in quantized for name in ranges)
    if stats:
        clip = []
        for name, amax in ranges.items():
            st = stats.get(name)
            if st is not None and st.absmax > 0 and (quantized is None or name in quantized):
                clip.append((amax / st.absmax, name))
        clip.sort()
        summary["most_clipped"] = [{"tensor": n, "amax_over_absmax": round(r, 4)} for r, n in clip[:10]]
    return summary


def quantized_tensors(qmodel) -> set:
    """Activations a Q/DQ graph quantizes: the float inputs of its QuantizeLinear nodes
    (``quantize_static`` keeps the original tensor names there), weights excluded."""
    inits = initializer_names(qmodel.graph)
    return {n.input[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
