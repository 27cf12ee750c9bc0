"""Which compute ops of an INT8 (Q/DQ) graph still run in float, and why.

:func:`float_ops_report` walks the quantized graph and lists every compute node (Conv,
ConvTranspose, Gemm, MatMul, residual Add, DeformConv, plugin ops) that has no
DequantizeLinear on its data input, has no INT8 kernel on the targets edgepose builds for
(ONNX Runtime CPU, TensorRT explicit quantization), or has INT8 inputs but a float output
(the heads' last layers by design; convs feeding a float op such as DeformConv), which ONNX
Runtime CPU then runs in float.  The build writes it into
``report.json`` so a user sees, for example, DLA-34's 16 DeformConv nodes and any
ConvTranspose the ``--cpu-rewrite`` could not take, instead of a silent float island.
"""
from __future__ import annotations

from edgepose.onnx_graph import consumers, load_model, producers

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


def _fork_reason(node, readers, users) -> str | None:
    """ORT CPU fuses DQ -> Conv -> Q only when one node reads the quantized output (measured
    on ORT 1.32: DLA-34's offset/mask and projection convs, FastPose's SE-block conv3)."""
    if node.op_type != "Conv":
        return None
    final = [r for u, _ in readers for dq, _ in users.get(u.output[0], [])
             for r, _ in (users.get(dq.output[0], []) if dq.op_type == "DequantizeLinear" else [(dq, 0)])]
    if len(readers) + len(final) <= 2:
        return None
    what = ", ".join(sorted({r.op_type for r in final}))
    return (f"its quantized output forks to {len(final)} readers ({what}): ONNX Runtime CPU fuses a QLinearConv "
            "only when one node reads its output, so it runs in float there (TensorRT fuses it)")


def _float_output_reason(node, users, outputs) -> str | None:
    """A quantized conv whose output no QuantizeLinear reads (a graph output, or a float op
    such as DeformConv): TensorRT runs it INT8 -> float, ORT CPU only fuses DQ -> Conv -> Q."""
    readers = users.get(node.output[0], [])
    if node.op_type not in ("Conv", "Gemm", "MatMul"):
        return None
    if any(u.op_type == "QuantizeLinear" for u, _ in readers):
        return _fork_reason(node, readers, users)
    what = ", ".join(sorted({u.op_type for u, _ in readers})) or "nothing"
    where = "a graph output" if node.output[0] in outputs else f"read by {what}"
    return (f"INT8 inputs but a float output ({where}): TensorRT runs it as INT8 with a float output, ONNX Runtime "
            "CPU fuses only DequantizeLinear -> Conv -> QuantizeLinear and runs it in float")


def _shared_input_reason(node, producer, users) -> str | None:
    """A conv whose input QuantizeLinear feeds several DequantizeLinear readers (or one DQ read by
    several nodes, which ORT duplicates): ORT converts int8 Q/DQ pairs to uint8 only with one DQ
    per Q, so this input stays int8 while the output pair turns uint8, and QLinearConv needs
    one type in and out (measured on ORT 1.32: DLA-34's projection convs after a MaxPool, before
    :func:`edgepose.quant.placement.dedicated_pair_per_reader`)."""
    if node.op_type != "Conv":
        return None
    dq = producer.get(node.input[0])
    q = producer.get(dq.input[0]) if dq is not None else None
    if q is None or q.op_type != "QuantizeLinear":
        return None
    readers = {r.name: r for d, _ in users.get(q.output[0], []) for r, _ in users.get(d.output[0], [])}
    if len(readers) <= 1:
        return None
    what = ", ".join(sorted({r.op_type for r in readers.values() if r is not node}))
    return (f"its input QuantizeLinear is shared with {len(readers) - 1} other reader(s) ({what}): ONNX Runtime CPU "
            "keeps that Q/DQ pair int8 but turns the output pair uint8, and QLinearConv needs one type, so it "
            "runs in float there (TensorRT fuses it)")


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
    return ""  # INT8 inputs: the caller checks the output


def float_ops_report(model, kept=()) -> list:
    """``[{node, op_type, reason}]`` for every compute op of the INT8 ``model`` (path or
    ModelProto) that stays float.  ``kept``: node names the build deliberately kept in FP32,
    or a ``{name: reason}`` dict."""
    model = load_model(model)
    graph = model.graph
    kept = dict(kept) if isinstance(kept, dict) else {name: None for name in kept}
    producer, users = producers(graph), consumers(graph)
    outputs = {o.name for o in graph.output}
    inits = {init.name: init for init in graph.initializer}
    report = []
    for node in graph.node:
        if node.op_type not in COMPUTE_OPS and node.domain in ("", "ai.onnx"):
            continue
        reason = _node_reason(node, producer, inits, kept)
        if reason == "":
            reason = _float_output_reason(node, users, outputs) or _shared_input_reason(node, producer, users)
        if reason:
            report.append({"node": node.name, "op_type": node.op_type, "reason": reason})
    return report
