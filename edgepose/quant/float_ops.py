"""Which compute ops of an INT8 (Q/DQ) graph still run in float, and why.

:func:`float_ops_report` walks the quantized graph and lists every compute node (Conv,
ConvTranspose, Gemm, MatMul, residual Add, DeformConv, plugin ops) that either has no
DequantizeLinear on its data input or has no INT8 kernel on the targets edgepose builds for
(ONNX Runtime CPU, TensorRT explicit quantization).  The build writes it into
``report.json`` so a user sees, for example, DLA-34's 16 DeformConv nodes and any
ConvTranspose the ``--cpu-rewrite`` could not take, instead of a silent float island.
"""
from __future__ import annotations

from edgepose.onnx_graph import load_model, producers

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "DeformConv")

DEFORM_REASON = ("no INT8 DeformConv kernel: ONNX Runtime CPU has none and TensorRT's Q/DQ rules quantize only "
                 "Conv/ConvTranspose/Gemm/MatMul, so it runs in FP32 between its neighbours' Q/DQ")
KEPT_REASON = "kept in FP32 by the build (CPU stem reading the image, or the accuracy budget)"


def _is_dequantized(name, producer) -> bool:
    src = producer.get(name)
    return src is not None and src.op_type == "DequantizeLinear"


def _deconv_reason(node, producer, inits) -> str:
    """Reason for a ConvTranspose left in the INT8 graph: ORT CPU has no INT8 kernel for it."""
    from edgepose.quant.rewrite import deconv_ineligible

    weight = node.input[1]
    dq = producer.get(weight)
    consts = dict(inits)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
        consts[weight] = inits[dq.input[0]]  # only the shape is read
    why = deconv_ineligible(node, consts)
    rewrite = (f"--cpu-rewrite cannot turn it into Conv + DepthToSpace: {why}" if why
               else "--cpu-rewrite would turn it into an INT8 Conv + DepthToSpace")
    return ("ONNX Runtime CPU has no INT8 ConvTranspose kernel, so it runs in float there (TensorRT quantizes it); "
            + rewrite)


def _node_reason(node, producer, inits, kept: dict) -> str | None:
    """Why ``node`` runs in float (None when it runs in INT8 on both targets)."""
    if node.name in kept:
        return kept[node.name] or KEPT_REASON
    if node.domain not in ("", "ai.onnx"):
        return f"plugin op (domain {node.domain!r}) with a float kernel only"
    if node.op_type == "DeformConv":
        return DEFORM_REASON
    data = [i for i in node.input[:2] if i and i not in inits] if node.op_type == "Add" else node.input[:1]
    if node.op_type == "Add" and len(data) < 2:
        return None  # bias-like Add with a constant: part of its producer, not a residual
    if not all(_is_dequantized(name, producer) for name in data):
        return "no Q/DQ on its inputs (not quantized), so it runs in float"
    if node.op_type == "ConvTranspose":
        return _deconv_reason(node, producer, inits)
    return None


def float_ops_report(model, kept=()) -> list:
    """``[{node, op_type, reason}]`` for every compute op of the INT8 ``model`` (path or
    ModelProto) that stays float.  ``kept``: node names the build deliberately kept in FP32,
    or a ``{name: reason}`` dict."""
    model = load_model(model)
    graph = model.graph
    kept = dict(kept) if isinstance(kept, dict) else {name: None for name in kept}
    producer = producers(graph)
    inits = {init.name: init for init in graph.initializer}
    report = []
    for node in graph.node:
        if node.op_type not in COMPUTE_OPS and node.domain in ("", "ai.onnx"):
            continue
        reason = _node_reason(node, producer, inits, kept)
        if reason:
            report.append({"node": node.name, "op_type": node.op_type, "reason": reason})
    return report
