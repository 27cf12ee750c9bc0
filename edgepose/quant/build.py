"""The ONNX -> ONNX steps of a precision build, with the feeds given by the caller.

* :func:`calibrate` -- prepare one FP32 graph (BN folding, optional CPU rewrite) and run the
  one statistics pass on the calibration feeds;
* :func:`quantize_method` -- ranges by one method from those statistics, Q/DQ graph written,
  its output cosines on held-out feeds (:func:`quantize_with_feeds` does both);
* :func:`describe_graph` -- Q/DQ lint, ONNX Runtime fusion counts and SHA-256 of a written graph;
* :func:`max_rel_err` / :func:`output_cosines` -- output agreement of two graphs on feeds;
* :func:`split_feeds` -- a held-out slice of a feed list.

Nothing here reads images, runs the pipeline or knows the models: the flows in
:mod:`edgepose.workflows.build` make the feeds and write the report.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edgepose.compare import compare_runs
from edgepose.ort_session import create_session, run_feeds

log = logging.getLogger("edgepose")

PRECISIONS = ("int8", "fp16")


@dataclass
class CalibratedGraph:
    """One prepared FP32 model and the statistics of its one calibration pass (every range
    method is computed from these, :func:`quantize_method`)."""

    prepared: object  # the prepared FP32 onnx.ModelProto
    prepare_info: dict
    stats: dict  # {tensor: TensorStats}
    always: list  # nodes kept in FP32 in every variant (CPU stem convs with cpu_rewrite)
    cpu_rewrite: bool = False
    references: dict = field(default_factory=dict)  # FP32 outputs on held-out feeds, computed once per feed set


@dataclass
class QuantizedGraph:
    """One model quantized with one range method (:func:`quantize_method`)."""

    prepared: object  # the prepared FP32 onnx.ModelProto
    stats: dict  # {tensor: TensorStats} of the one statistics pass
    ranges: dict  # {tensor: amax} of ``method``
    method: str
    always: list  # nodes kept in FP32 (CPU stem convs; layers kept for agreement)
    extra_meta: dict
    entry: dict = field(default_factory=dict)  # the report entry of this model


def split_feeds(feeds: list, held_out: float):
    """``(calibration feeds, held-out feeds)``: ``held_out`` of them, evenly spaced."""
    n = len(feeds)
    if n < 2:
        return feeds, feeds
    k = min(n - 1, max(1, int(round(n * held_out))))
    hold = set(np.linspace(0, n - 1, k).round().astype(int).tolist())
    return [f for i, f in enumerate(feeds) if i not in hold], [feeds[i] for i in sorted(hold)]


def calibrate(fp32_model, calib_feeds: list, cpu_rewrite: bool = False, progress: bool = False,
              threads=None, on_outputs=None) -> CalibratedGraph:
    """Prepare ``fp32_model`` (path or ModelProto: BN folding, optional CPU rewrite) and run the
    one statistics pass on ``calib_feeds`` (a list of ``{input: array}``); ``on_outputs`` gets
    the graph outputs of every batch of that pass (:func:`~edgepose.quant.statistics.collect_statistics`)."""
    from edgepose.quant import calibration
    from edgepose.quant.int8 import cpu_float_nodes, prepare_fp32

    prepared, prep_info = prepare_fp32(fp32_model, cpu_rewrite=cpu_rewrite)
    stats = calibration.collect_statistics(prepared, calibration.FeedReader(calib_feeds), progress=progress,
                                           threads=threads, on_outputs=on_outputs)
    always = cpu_float_nodes(prepared) if cpu_rewrite else []
    return CalibratedGraph(prepared, prep_info, stats, always, bool(cpu_rewrite))


def quantize_method(graph: CalibratedGraph, method: str, out_path, hold_feeds=(), meta=None,
                    extra_meta: dict | None = None, keep_fp32=()) -> QuantizedGraph:
    """Write the INT8 Q/DQ graph of ``graph`` with the ranges of ``method`` to ``out_path``
    (graph outputs and head inputs keep their full range; ``keep_fp32`` nodes stay FP32 on
    top of ``graph.always``).  The report entry holds the prepare summary, the ranges summary,
    the quantizable node count, the FP32 nodes and the output cosines on up to four
    ``hold_feeds``."""
    from edgepose.quant import calibration
    from edgepose.quant.int8 import quantizable_nodes, quantize_int8
    from edgepose.quant.ranges import quantized_tensors

    prepared = graph.prepared
    ranges = calibration.compute_ranges(graph.stats, method, full_range=calibration.head_tensors(prepared))
    extra = {"calib_method": method, **(extra_meta or {}), "cpu_rewrite": graph.cpu_rewrite}
    always = list(dict.fromkeys([*graph.always, *keep_fp32]))
    qmodel = quantize_int8(prepared, ranges, out_path, nodes_to_exclude=always, meta=meta,
                           extra_meta={**extra, "fp32_nodes": always})
    summary = calibration.summarize_ranges(ranges, graph.stats, quantized=quantized_tensors(qmodel))
    entry = {"prepare": graph.prepare_info, "ranges": summary,
             "quantized_nodes": len(quantizable_nodes(prepared)), "fp32_nodes": always}
    hold = list(hold_feeds)[:4]
    key = tuple(map(id, hold))  # every method is scored on the same feeds: FP32 runs once
    if hold and key not in graph.references:
        graph.references[key] = _outputs(prepared, hold)
    entry["cosine_vs_fp32_heldout"] = output_cosines(prepared, qmodel, hold, reference=graph.references.get(key))
    return QuantizedGraph(prepared, graph.stats, ranges, method, always, extra, entry)


def quantize_with_feeds(fp32_model, calib_feeds: list, hold_feeds: list, out_path, method: str = "entropy",
                        cpu_rewrite: bool = False, meta=None, extra_meta: dict | None = None,
                        progress: bool = False, threads=None) -> QuantizedGraph:
    """:func:`calibrate` then :func:`quantize_method` with one ``method``."""
    graph = calibrate(fp32_model, calib_feeds, cpu_rewrite=cpu_rewrite, progress=progress, threads=threads)
    return quantize_method(graph, method, out_path, hold_feeds, meta=meta, extra_meta=extra_meta)


def describe_graph(path, precision: str, allow_float=(), ort_path=None) -> dict:
    """``{"lint", "float_ops", "ort_cpu_fusion"}`` (INT8 only) and ``"sha256"`` of the graph at ``path``;
    the fusion counts come from ``ort_path`` when given (the copy ONNX Runtime runs of a graph
    with plugin nodes)."""
    import onnx

    from edgepose.io_utils import sha256_file

    entry = {}
    if precision == "int8":
        from edgepose.quant.float_ops import float_ops_report
        from edgepose.quant.int8 import fusion_summary
        from edgepose.quant.lint import lint_qdq

        model = onnx.load(str(path))
        entry["lint"] = [str(i) for i in lint_qdq(model, allow_float=allow_float)] or "clean"
        entry["float_ops"] = float_ops_report(model, kept=allow_float)
        entry["ort_cpu_fusion"] = fusion_summary(ort_path or path)
    entry["sha256"] = sha256_file(path)
    return entry


def _outputs(model, feeds) -> list:
    return run_feeds(create_session(model, threads=1, disable_cse=True), feeds)


def _runs(model_a, model_b, feeds, reference=None):
    return compare_runs(reference if reference is not None else _outputs(model_a, feeds), _outputs(model_b, feeds))


def max_rel_err(model_a, model_b, feeds) -> dict:
    """Per output, the worst ``max |b - a| / max |a|`` over ``feeds``."""
    return {row.name: row.max_rel for row in _runs(model_a, model_b, feeds)}


def output_cosines(fp32_model, q_model, feeds, reference=None) -> dict:
    """Per output, the cosine of the FP32 and the quantized outputs over ``feeds`` together
    (``reference``: the FP32 outputs on ``feeds`` when already computed)."""
    if not feeds:
        return {}
    return {row.name: round(row.cosine, 6) for row in _runs(fp32_model, q_model, feeds, reference)}
