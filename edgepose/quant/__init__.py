"""Precision: FP16 casts and INT8 Q/DQ as strongly typed ONNX, calibration, lint, budget search.

Nothing heavy is imported here; use the submodules:

* :mod:`edgepose.quant.calibration` -- calibration sets and feeds (re-exports the two below)
* :mod:`edgepose.quant.statistics` -- the one batched statistics pass (``collect_statistics``)
* :mod:`edgepose.quant.ranges` -- ``compute_ranges`` (entropy, minmax, percentile, mse)
* :mod:`edgepose.quant.int8` -- ``prepare_fp32``, ``quantize_int8``, ORT fusion counts
* :mod:`edgepose.quant.fp16` -- ``convert_fp16``
* :mod:`edgepose.quant.lint` -- ``lint_qdq``/``check_qdq`` (TensorRT Q/DQ rules)
* :mod:`edgepose.quant.rewrite` -- BN folding, ConvTranspose (grouped too) -> Conv + DepthToSpace
* :mod:`edgepose.quant.placement` -- exact Q/DQ placement fixes for ORT CPU fusion
* :mod:`edgepose.quant.float_ops` -- ``float_ops_report``: the ops an INT8 graph leaves float, and why
* :mod:`edgepose.quant.sensitivity` -- per-layer sensitivity and the accuracy-budget search
* :mod:`edgepose.quant.build` -- ``build_precision`` (what ``edgepose build`` runs)
"""
from __future__ import annotations

__all__ = ["build_precision", "lint_qdq", "check_qdq"]


def __getattr__(name):
    if name == "build_precision":
        from edgepose.quant.build import build_precision

        return build_precision
    if name in ("lint_qdq", "check_qdq"):
        from edgepose.quant import lint

        return getattr(lint, name)
    raise AttributeError(name)
