"""Exact graph rewrites that make an FP32 ONNX graph quantize better.

* :func:`fold_batchnorm` folds a ``BatchNormalization`` into the ``Conv``/``ConvTranspose``
  that feeds it (exporters leave BN after ConvTranspose unfused; a BN between a Q/DQ'd conv
  and its consumer would stop TensorRT and ONNX Runtime from fusing the quantized conv).
* :func:`deconv_to_conv_d2s` rewrites ``ConvTranspose(k=4, stride=2, pad=1, groups=1)`` as a
  3x3 ``Conv`` to ``4*Cout`` channels followed by ``DepthToSpace(2, DCR)``.  The two are
  mathematically identical; the rewrite only moves the same products into a different op.
  ONNX Runtime's CPU provider has no quantized ConvTranspose, so on CPU the deconvolutions
  otherwise run in float and take over half the INT8 time.  TensorRT quantizes
  ConvTranspose natively, so the rewrite is optional and meant for CPU targets.

Derivation (1-D, per axis): the transposed conv writes ``x[i] * W[k]`` to output position
``2*i - 1 + k``.  Output ``2*m + a`` therefore receives ``x[m] W[1] + x[m-1] W[3]`` for
``a = 0`` and ``x[m+1] W[0] + x[m] W[2]`` for ``a = 1``.  A 3x3 conv with pad 1 sees
``x[m-1], x[m], x[m+1]`` at taps ``r = 0, 1, 2``; so phase ``a`` uses kernel tap
``_TAP[a][r]`` (None = zero).  In 2-D the phases ``(a, b)`` become ``4`` channel groups, and
DepthToSpace in DCR mode puts channel ``(a*2 + b)*Cout + o`` at pixel ``(2m + a, 2n + b)``.
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import QuantizationError
from edgepose.onnx_graph import consumers, producers

# phase a (0/1) -> {3x3 tap r: 4x4 kernel index}
_TAP = ({0: 3, 1: 1}, {1: 2, 2: 0})


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _initializers(graph) -> dict:
    return {init.name: init for init in graph.initializer}


def _replace_initializer(graph, name, array):
    from onnx import numpy_helper

    for i, init in enumerate(graph.initializer):
        if init.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))
            return
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))


def _unique(graph, base: str) -> str:
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output} \
        | {n.name for n in graph.node} | {i.name for i in graph.input}
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def fold_batchnorm(model):
    """Fold every BatchNormalization fed by a Conv/ConvTranspose (whose output has no other
    user and is not a graph output) into that conv's weights and bias.  In place; returns
    ``(model, folded_count)``.  Exact up to float rounding."""
    from onnx import numpy_helper

    graph = model.graph
    inits = _initializers(graph)
    producer = producers(graph)
    users = consumers(graph)
    outputs = {o.name for o in graph.output}
    remove, folded = [], 0
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose"):
            continue
        if len(users.get(conv.output[0], [])) != 1 or conv.output[0] in outputs:
            continue
        if not all(name in inits for name in bn.input[1:5]) or conv.input[1] not in inits:
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
            continue
        eps = float(_attrs(bn).get("epsilon", 1e-5))
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        has_bias = len(conv.input) > 2 and bool(conv.input[2])
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros_like(mean)
        factor = gamma / np.sqrt(var + eps)
        if conv.op_type == "Conv":
            w = w * factor.reshape(-1, *([1] * (w.ndim - 1)))
        else:  # ConvTranspose: weight (Cin, Cout/g, kh, kw); output channel = g*Cout/g + j
            group = int(_attrs(conv).get("group", 1))
            cin, cout_g = w.shape[:2]
            wg = w.reshape(group, cin // group, cout_g, *w.shape[2:])
            f = factor.reshape(group, 1, cout_g, *([1] * (w.ndim - 2)))
            w = (wg * f).reshape(w.shape)
        b = (b - mean) * factor + beta
        w_name = _unique(graph, conv.input[1] + "_bnfold")
        b_name = _unique(graph, (conv.input[2] if has_bias else conv.name + "_bias") + "_bnfold")
        _replace_initializer(graph, w_name, w.astype(np.float32))
        _replace_initializer(graph, b_name, b.astype(np.float32))
        inits = _initializers(graph)
        data_in = conv.input[0]
        del conv.input[:]
        conv.input.extend([data_in, w_name, b_name])
        conv.output[0] = bn.output[0]
        remove.append(bn)
        folded += 1
    for node in remove:
        graph.node.remove(node)
    _drop_unused_initializers(graph)
    return model, folded


def _drop_unused_initializers(graph):
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def deconv_to_conv_d2s(model, nodes=None):
    """Rewrite eligible ConvTranspose nodes (kernel 4x4, stride 2, pads 1, group 1, no
    dilation/output_padding/output_shape) as Conv3x3(pad 1) -> DepthToSpace(2, DCR).
    ``nodes``: names to rewrite (default all eligible).  In place; returns
    ``(model, rewritten_names)``."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = _initializers(graph)
    rewritten = []
    new_nodes = []
    for node in graph.node:
        if node.op_type != "ConvTranspose" or (nodes is not None and node.name not in nodes):
            new_nodes.append(node)
            continue
        reason = deconv_ineligible(node, inits)
        if reason:
            if nodes is not None:
                raise QuantizationError(f"cannot rewrite ConvTranspose {node.name!r}: {reason}")
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)  # (Cin, Cout, 4, 4)
        cin, cout = w.shape[:2]
        wc = np.zeros((2, 2, cout, cin, 3, 3), dtype=np.float32)
        for a in (0, 1):
            for b in (0, 1):
                for r, kh in _TAP[a].items():
                    for s, kw in _TAP[b].items():
                        wc[a, b, :, :, r, s] = w[:, :, kh, kw].T
        wc = wc.reshape(4 * cout, cin, 3, 3)
        base = node.name or node.output[0]
        w_name = _unique(graph, base + "_d2s_weight")
        graph.initializer.append(numpy_helper.from_array(wc, w_name))
        conv_inputs = [node.input[0], w_name]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            b_name = _unique(graph, base + "_d2s_bias")
            graph.initializer.append(numpy_helper.from_array(np.tile(bias, 4), b_name))
            conv_inputs.append(b_name)
        mid = _unique(graph, base + "_d2s_conv_out")
        conv = helper.make_node("Conv", conv_inputs, [mid], name=_unique(graph, base + "_d2s_conv"),
                                kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        d2s = helper.make_node("DepthToSpace", [mid], [node.output[0]], name=_unique(graph, base + "_d2s"),
                               blocksize=2, mode="DCR")
        new_nodes.extend([conv, d2s])
        rewritten.append(node.name)
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
        _drop_unused_initializers(graph)
        for vi in list(graph.value_info):  # stale shapes of removed tensors are harmless; refresh
            graph.value_info.remove(vi)
        model = onnx.shape_inference.infer_shapes(model)
    return model, rewritten


def deconv_ineligible(node, inits) -> str | None:
    """Why ``node`` cannot take the exact 4x4/s2/p1 rewrite (None when it can)."""
    from onnx import numpy_helper

    at = _attrs(node)
    if node.input[1] not in inits:
        return "its weight is not a constant"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return "its bias is not a constant"
    w = numpy_helper.to_array(inits[node.input[1]])
    if w.ndim != 4 or tuple(w.shape[2:]) != (4, 4):
        return f"kernel {tuple(w.shape[2:])} is not 4x4"
    if int(at.get("group", 1)) != 1:
        return "grouped ConvTranspose"
    if list(at.get("strides", [1, 1])) != [2, 2]:
        return "stride is not 2"
    if list(at.get("pads", [0, 0, 0, 0])) != [1, 1, 1, 1]:
        return "pads are not 1"
    if any(d != 1 for d in at.get("dilations", [1, 1])):
        return "dilated"
    if any(p != 0 for p in at.get("output_padding", [0, 0])):
        return "output_padding is set"
    if "output_shape" in at:
        return "output_shape is set"
    auto_pad = at.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        return "auto_pad is set"
    return None
