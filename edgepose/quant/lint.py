"""Check an INT8 ONNX graph against the Q/DQ rules TensorRT's explicit quantization needs.

:func:`lint_qdq` returns a list of :class:`LintIssue` (empty = clean); :func:`check_qdq`
raises :class:`~edgepose.errors.QuantizationError` listing them.  Rules (``rule`` field):

``qlinear-op``        an operator-style quantized op (QLinearConv, ConvInteger, ...) is in the
                      file -- TensorRT builds Q/DQ graphs only
``zero-point-missing`` a QuantizeLinear/DequantizeLinear without a zero point (ONNX then
                      means uint8)
``uint8``             a uint8 (or other non-int8) quantized type -- TensorRT rejects it
``asymmetric``        a non-zero zero point
``bad-scale``         a scale that is not finite and positive
``activation-per-channel`` an activation quantized with more than one scale
``weight-per-tensor`` the weight of a Conv/ConvTranspose/Gemm/MatMul with one scale for
                      several output channels
``weight-axis``       a per-channel weight scale on an axis that is not the output channel
                      (Conv/Gemm(transB=1): 0; ConvTranspose: 1; MatMul/Gemm(transB=0): last)
``int32-bias``        a DequantizeLinear of an int32 bias (keep biases float)
``missing-qdq``       a Conv/ConvTranspose/Gemm/MatMul whose data or weight input does not come
                      from a DequantizeLinear (unless the node is allowed to stay float)
``dq-without-q``      an activation DequantizeLinear not fed by a QuantizeLinear
``pair-mismatch``     a QuantizeLinear -> DequantizeLinear pair with different scale/zero point
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepose.errors import QuantizationError
from edgepose.onnx_graph import consumers, load_model, producers

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_OPERATOR_QUANT = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearAdd",
                   "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
                   "QLinearGlobalAveragePool", "QLinearReduceMean", "QLinearSoftmax", "QLinearWhere",
                   "QAttention", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                   "QLinearConvTranspose", "QLinearResize"}


@dataclass(frozen=True)
class LintIssue:
    rule: str
    node: str
    message: str

    def __str__(self):
        return f"[{self.rule}] {self.node}: {self.message}"


def _const_values(graph) -> dict:
    """Initializers and Constant-node outputs as numpy arrays."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node, name, default=None):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _weight_axis(consumer, rank: int) -> int:
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type == "ConvTranspose":
        return 1
    if consumer.op_type == "Gemm":
        return 0 if int(_attr(consumer, "transB", 0)) else 1
    return rank - 1  # MatMul: (K, N)


def lint_qdq(model, allow_float=(), require_per_channel: bool = True) -> list:
    """Lint ``model`` (path or ModelProto).  ``allow_float``: node names deliberately kept
    in higher precision (accuracy budget) -- they may lack Q/DQ.  An ORT-CPU-only file
    (``--cpu-rewrite``) stores its symmetric int8 activations as uint8 with zero point 128
    (exact, :func:`edgepose.quant.placement.activations_as_uint8`); it is checked as the int8
    graph it re-expresses."""
    model = load_model(model)
    if any(p.key == "edgepose.int8_cpu_target" and p.value == "1" for p in model.metadata_props):
        import onnx

        from edgepose.quant.placement import activations_as_int8

        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        activations_as_int8(copy)
        model = copy
    linter = _Linter(model.graph, require_per_channel)
    for node in linter.graph.node:
        if node.op_type in _OPERATOR_QUANT:
            linter.add("qlinear-op", node, f"{node.op_type} is an operator-style quantized op; TensorRT needs Q/DQ "
                                           "(re-quantize with QuantFormat.QDQ)")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            linter.check_qdq_node(node)
    linter.check_weighted_layers(set(allow_float))
    return linter.issues


class _Linter:
    """The rules of :func:`lint_qdq`, one method per part of the graph; issues in graph order."""

    def __init__(self, graph, require_per_channel: bool):
        self.graph, self.require_per_channel = graph, require_per_channel
        self.consts = _const_values(graph)
        self.producer = producers(graph)
        self.users = consumers(graph)
        self.issues: list = []

    def add(self, rule, node, message):
        self.issues.append(LintIssue(rule, node.name or node.op_type, message))

    def check_qdq_node(self, node):
        scale = self.consts.get(node.input[1]) if len(node.input) > 1 else None
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zp = self.consts.get(zp_name) if zp_name else None
        data = node.input[0]
        self._check_zero_point(node, zp_name, zp)
        weight = self.consts.get(data) if node.op_type == "DequantizeLinear" else None
        if weight is not None and weight.dtype not in (np.int8, np.int32):
            self.add("uint8", node, f"quantized weight is {weight.dtype}; TensorRT needs int8")
        if scale is None:
            self.add("bad-scale", node, "the scale is not a constant")
            return
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            self.add("bad-scale", node, "scale must be finite and positive")
        if data not in self.consts:
            self._check_activation(node, data, scale, zp)
        else:  # weight (or bias) dequantize: check the consumer's axis rules
            self._check_weight(node, self.consts[data], scale)

    def _check_zero_point(self, node, zp_name, zp):
        import onnx

        is_dq = node.op_type == "DequantizeLinear"
        data = node.input[0]
        if zp_name is None:
            if is_dq and data in self.consts:
                qtype = self.consts[data].dtype
            else:
                qtype = np.int8 if _attr(node, "output_dtype", 0) == onnx.TensorProto.INT8 else None
            if qtype != np.int8:
                self.add("zero-point-missing", node, "no zero point, so ONNX quantizes to uint8; add an int8 zero "
                                                     "point of 0")
        elif zp is None:
            self.add("zero-point-missing", node, "the zero point is not a constant")
        else:
            if zp.dtype == np.int32 and is_dq:
                self.add("int32-bias", node, "dequantizes an int32 tensor (quantized bias); keep biases float "
                                             "(quantize_static extra option QuantizeBias=False)")
            elif zp.dtype != np.int8:
                self.add("uint8", node, f"quantized type {zp.dtype}; TensorRT needs signed int8 (QuantType.QInt8)")
            if np.any(zp != 0):
                self.add("asymmetric", node, f"zero point {zp.ravel()[:4].tolist()} is not 0; use symmetric "
                                             "quantization (ActivationSymmetric/WeightSymmetric)")

    def _check_activation(self, node, data, scale, zp):
        if scale.size > 1:
            self.add("activation-per-channel", node, f"activation {data!r} has {scale.size} scales; "
                                                     "activations must be per-tensor")
        if node.op_type != "DequantizeLinear":
            return
        src = self.producer.get(data)
        if src is None or src.op_type != "QuantizeLinear":
            self.add("dq-without-q", node, f"activation DequantizeLinear is fed by "
                                           f"{src.op_type if src else 'a graph input'}, not a QuantizeLinear")
            return
        s_q = self.consts.get(src.input[1])
        z_q = self.consts.get(src.input[2]) if len(src.input) > 2 and src.input[2] else None
        if s_q is not None and (s_q.shape != scale.shape or not np.allclose(s_q, scale, rtol=1e-6)):
            self.add("pair-mismatch", node, "scale differs from its QuantizeLinear's")
        if z_q is not None and zp is not None and (z_q.shape != zp.shape or np.any(z_q != zp)):
            self.add("pair-mismatch", node, "zero point differs from its QuantizeLinear's")

    def _check_weight(self, node, w, scale):
        for consumer, slot in self.users.get(node.output[0], []):
            if consumer.op_type not in WEIGHTED or slot != 1:
                continue
            axis = _weight_axis(consumer, w.ndim)
            channels = w.shape[axis] if w.ndim else 1
            if scale.size <= 1:
                if self.require_per_channel and channels > 1:
                    self.add("weight-per-tensor", node, f"weight of {consumer.op_type} {consumer.name!r} has one "
                                                        f"scale for {channels} output channels; quantize per channel")
                continue
            got = int(_attr(node, "axis", 1))
            got = got + w.ndim if got < 0 else got
            if got != axis or scale.size != w.shape[axis]:
                self.add("weight-axis", node, f"weight of {consumer.op_type} {consumer.name!r} is quantized on axis "
                                              f"{got} ({scale.size} scales); TensorRT needs axis {axis} "
                                              f"({w.shape[axis]} output channels)")

    def check_weighted_layers(self, allow_float: set):
        for node in self.graph.node:
            if node.op_type not in WEIGHTED or node.name in allow_float:
                continue
            for slot, what in ((0, "data"), (1, "weight")):
                if slot >= len(node.input):
                    continue
                src = self.producer.get(node.input[slot])
                if src is None or src.op_type != "DequantizeLinear":
                    self.add("missing-qdq", node, f"{what} input {node.input[slot]!r} of {node.op_type} has no "
                                                  "DequantizeLinear; TensorRT would run this layer in float")


def check_qdq(model, allow_float=(), require_per_channel: bool = True, what: str = "INT8 graph"):
    """Raise QuantizationError when ``lint_qdq`` finds anything; return the model otherwise."""
    issues = lint_qdq(model, allow_float=allow_float, require_per_channel=require_per_channel)
    if issues:
        shown = "; ".join(str(i) for i in issues[:6])
        more = f" (+{len(issues) - 6} more)" if len(issues) > 6 else ""
        raise QuantizationError(f"{what} breaks the TensorRT Q/DQ rules: {shown}{more}. This is a bug in the "
                                "quantization step; report it with the model")
    return model
