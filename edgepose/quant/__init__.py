"""Precision: FP16 casts and INT8 Q/DQ as strongly typed ONNX, calibration, lint, budget search.

A pure ONNX -> ONNX library (onnx, onnxruntime, numpy and edgepose's bottom layer): it takes
calibration feeds as lists of ``{input: array}`` and returns graphs and numbers; reading
images, running the pipeline and measuring AP are flows of :mod:`edgepose.workflows.build`.
Nothing heavy is imported here; use the submodules:

* :mod:`edgepose.quant.calibration` -- the calibration-set hash; re-exports the two below
* :mod:`edgepose.quant.statistics` -- the one batched statistics pass (``collect_statistics``)
* :mod:`edgepose.quant.ranges` -- ``compute_ranges`` (entropy, minmax, percentile, mse)
* :mod:`edgepose.quant.build` -- ``quantize_with_feeds``, ``describe_graph``, output agreement
* :mod:`edgepose.quant.int8` -- ``prepare_fp32``, ``quantize_int8``, ORT fusion counts
* :mod:`edgepose.quant.fp16` -- ``convert_fp16``
* :mod:`edgepose.quant.lint` -- ``lint_qdq``/``check_qdq`` (TensorRT Q/DQ rules)
* :mod:`edgepose.quant.rewrite` -- BN folding, ConvTranspose (grouped too) -> Conv + DepthToSpace
* :mod:`edgepose.quant.placement` -- exact Q/DQ placement fixes for ORT CPU fusion
* :mod:`edgepose.quant.float_ops` -- ``float_ops_report``: the ops an INT8 graph leaves float, and why
* :mod:`edgepose.quant.sensitivity` -- per-layer sensitivity and the accuracy-budget search
"""
from __future__ import annotations

__all__ = ["lint_qdq", "check_qdq"]


def __getattr__(name):
    if name in ("lint_qdq", "check_qdq"):
        from edgepose.quant import lint

        return getattr(lint, name)
    raise AttributeError(name)
