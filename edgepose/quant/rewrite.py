"""Exact graph rewrites that make an FP32 ONNX graph quantize better.

* :func:`fold_batchnorm` folds a ``BatchNormalization`` into the ``Conv``/``ConvTranspose``
  that feeds it (exporters leave BN after ConvTranspose unfused; a BN between a Q/DQ'd conv
  and its consumer would stop TensorRT and ONNX Runtime from fusing the quantized conv).
* :func:`deconv_to_conv_d2s` rewrites ``ConvTranspose(kernel K, stride s, pads p)`` with
  ``K - p_begin - p_end == s`` (4x4/s2/p1 of ResNet/FastPose, DLA-34's grouped
  ``2f/f/f//2`` upsampling) as a ``Conv`` to ``s*s*Cout`` channels (same ``group``) followed by
  ``DepthToSpace(s)``.  The two are
  mathematically identical; the rewrite only moves the same products into a different op.
  ONNX Runtime's CPU provider has no quantized ConvTranspose, so on CPU the deconvolutions
  otherwise run in float and take over half the INT8 time.  TensorRT quantizes
  ConvTranspose natively, so the rewrite is optional and meant for CPU targets.

Derivation (1-D, per axis, 4x4/s2/p1): the transposed conv writes ``x[i] * W[k]`` to output
``2*i - 1 + k``.  Output ``2*m + a`` therefore receives ``x[m] W[1] + x[m-1] W[3]`` for
``a = 0`` and ``x[m+1] W[0] + x[m] W[2]`` for ``a = 1``: a 3x3 conv with pad 1 (taps
``x[m-1], x[m], x[m+1]``) per phase.  :func:`_phase_taps` does the same for any eligible
kernel/stride/pad.  In 2-D the ``s*s`` phases ``(a, b)`` become channel groups that
DepthToSpace puts at pixel ``(s*m + a, s*n + b)``: DCR order (``(a*s + b)*Cout + o``) for
ungrouped deconvolutions, CRD order (``o*s*s + a*s + b``) for grouped ones, so each group's
output channels stay contiguous and the Conv keeps the same ``group``.
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import QuantizationError
from edgepose.onnx_graph import consumers, producers

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


def deconv_to_conv_d2s(model, nodes=None, split_phases: bool = False):
    """Rewrite eligible ConvTranspose nodes (2-D, equal strides ``s`` on both axes, kernel
    ``K`` and pads with ``K - pad_begin - pad_end == s`` per axis -- 4x4/s2/p1, DLA-34's
    ``2f x 2f / sf / p f//2`` -- any ``group``, no dilation/output_padding/output_shape) as
    Conv(pad) -> DepthToSpace(s).  ``nodes``: names to rewrite (default all eligible).
    ``split_phases``: ungrouped deconvolutions whose phases read fewer taps than their union
    (4x4/s2/p1: 2x2 of the 3x3) become one Conv per phase -> Concat -> DepthToSpace instead
    (:func:`_split_phase_nodes`; 2.25x fewer multiply-adds for 4x4/s2/p1).  In place; returns
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
        split = _split_phase_nodes(graph, node, inits) if split_phases else None
        new_nodes.extend(split or _phase_conv_nodes(graph, node, inits))
        rewritten.append(node.name)
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
        _drop_unused_initializers(graph)
        for vi in list(graph.value_info):  # stale shapes of removed tensors are harmless; refresh
            graph.value_info.remove(vi)
        model = onnx.shape_inference.infer_shapes(model)
    return model, rewritten


def _phase_taps(kernel: int, stride: int, pad_begin: int):
    """Per axis: ``(taps, conv_kernel, conv_pads)`` where ``taps[a][r]`` is the ConvTranspose
    kernel index that output phase ``a`` reads at Conv tap ``r`` (-1 = zero).

    Output ``s*m + a`` receives ``x[i] * W[k]`` with ``k = s*(m - i) + a + pad_begin``; with
    ``d = m - i`` between ``d_min`` and ``d_max`` the Conv reads ``x[m + r - d_max]`` at tap
    ``r = d_max - d``, so its pads are ``(d_max, -d_min)`` and it keeps the input size."""
    d_min = -((stride - 1 + pad_begin) // stride)  # ceil((1 - s - pad_begin) / s)
    d_max = (kernel - 1 - pad_begin) // stride
    size = d_max - d_min + 1
    taps = np.full((stride, size), -1, dtype=np.int64)
    for a in range(stride):
        for r in range(size):
            k = stride * (d_max - r) + a + pad_begin
            if 0 <= k < kernel:
                taps[a, r] = k
    return taps, size, (d_max, -d_min)


def _phase_weight(w, group: int, stride: int, taps_h, taps_w, size_h, size_w, dcr: bool):
    """Conv weight for the phase decomposition of ConvTranspose weight ``w`` (Cin, Cout/g, kh, kw).
    Channel order: CRD ``o*s*s + a*s + b`` (groups stay contiguous), or DCR
    ``(a*s + b)*Cout + o`` when ``dcr`` (group 1 only)."""
    cin, cout_g = w.shape[:2]
    wt = w.reshape(group, cin // group, cout_g, *w.shape[2:]).transpose(0, 2, 1, 3, 4)  # g, Cout/g, Cin/g, kh, kw
    wc = np.zeros((group, cout_g, stride, stride, cin // group, size_h, size_w), dtype=np.float32)
    for a in range(stride):
        for r in range(size_h):
            if taps_h[a, r] < 0:
                continue
            for b in range(stride):
                for t in range(size_w):
                    if taps_w[b, t] >= 0:
                        wc[:, :, a, b, :, r, t] = wt[:, :, :, taps_h[a, r], taps_w[b, t]]
    wc = wc.reshape(group * cout_g, stride, stride, cin // group, size_h, size_w)
    if dcr:
        wc = wc.transpose(1, 2, 0, 3, 4, 5)
    return wc.reshape(-1, cin // group, size_h, size_w)


def _phase_conv_nodes(graph, node, inits) -> list:
    """The Conv -> DepthToSpace pair that computes ``node`` exactly (see :func:`_phase_taps`)."""
    from onnx import helper, numpy_helper

    at = _attrs(node)
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    group, stride = int(at.get("group", 1)), int(list(at["strides"])[0])
    pads = list(at.get("pads", [0, 0, 0, 0]))
    taps_h, size_h, pads_h = _phase_taps(w.shape[2], stride, pads[0])
    taps_w, size_w, pads_w = _phase_taps(w.shape[3], stride, pads[1])
    dcr = group == 1  # DCR keeps the historical layout of ungrouped rewrites; CRD keeps groups contiguous
    base = node.name or node.output[0]
    w_name = _unique(graph, base + "_d2s_weight")
    graph.initializer.append(numpy_helper.from_array(
        _phase_weight(w, group, stride, taps_h, taps_w, size_h, size_w, dcr), w_name))
    conv_inputs = [node.input[0], w_name]
    if len(node.input) > 2 and node.input[2]:
        bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
        b_name = _unique(graph, base + "_d2s_bias")
        expanded = np.tile(bias, stride * stride) if dcr else np.repeat(bias, stride * stride)
        graph.initializer.append(numpy_helper.from_array(expanded, b_name))
        conv_inputs.append(b_name)
    mid = _unique(graph, base + "_d2s_conv_out")
    conv = helper.make_node("Conv", conv_inputs, [mid], name=_unique(graph, base + "_d2s_conv"),
                            kernel_shape=[size_h, size_w], pads=[pads_h[0], pads_w[0], pads_h[1], pads_w[1]],
                            strides=[1, 1], group=group)
    d2s = helper.make_node("DepthToSpace", [mid], [node.output[0]], name=_unique(graph, base + "_d2s"),
                           blocksize=stride, mode="DCR" if dcr else "CRD")
    return [conv, d2s]


PHASE_CONCAT_SUFFIX = "_d2s_phase_concat"


def _phase_ranges(taps) -> list:
    """Per phase: ``(first, last)`` Conv tap it reads (taps[a][r] >= 0), or None when it reads none."""
    out = []
    for row in taps:
        used = np.flatnonzero(row >= 0)
        out.append((int(used[0]), int(used[-1])) if used.size else None)
    return out


def _split_phase_nodes(graph, node, inits):
    """``s*s`` Convs (one per output phase ``(a, b)``, each with only the taps that phase
    reads and its own pads) -> Concat (DCR channel order) -> DepthToSpace: the same products
    as :func:`_phase_conv_nodes` without the zero taps.  None when it does not apply (grouped,
    a phase with no taps or a negative pad, or no tap saved)."""
    from onnx import helper, numpy_helper

    at = _attrs(node)
    if int(at.get("group", 1)) != 1:
        return None
    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    stride, pads = int(list(at["strides"])[0]), list(at.get("pads", [0, 0, 0, 0]))
    taps_h, size_h, (pad_h, _) = _phase_taps(w.shape[2], stride, pads[0])
    taps_w, size_w, (pad_w, _) = _phase_taps(w.shape[3], stride, pads[1])
    rows, cols = _phase_ranges(taps_h), _phase_ranges(taps_w)
    if None in rows or None in cols:
        return None
    if all(r1 - r0 + 1 == size_h for r0, r1 in rows) and all(c1 - c0 + 1 == size_w for c0, c1 in cols):
        return None  # every phase reads the whole union: nothing to save
    if any(r0 > pad_h or r1 < pad_h for r0, r1 in rows) or any(c0 > pad_w or c1 < pad_w for c0, c1 in cols):
        return None  # a phase would need a negative pad
    full = _phase_weight(w, 1, stride, taps_h, taps_w, size_h, size_w, dcr=True)  # (s*s*Cout, Cin, kh, kw)
    cout = w.shape[1]
    bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) \
        if len(node.input) > 2 and node.input[2] else None
    base = node.name or node.output[0]
    nodes, parts = [], []
    for a, (r0, r1) in enumerate(rows):
        for b, (c0, c1) in enumerate(cols):
            k = a * stride + b
            tag = f"{base}_d2s_phase{a}{b}"
            w_name = _unique(graph, tag + "_weight")
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(full[k * cout:(k + 1) * cout, :, r0:r1 + 1, c0:c1 + 1]), w_name))
            conv_inputs = [node.input[0], w_name]
            if bias is not None:
                b_name = _unique(graph, tag + "_bias")
                graph.initializer.append(numpy_helper.from_array(bias.copy(), b_name))
                conv_inputs.append(b_name)
            out = _unique(graph, tag + "_out")
            nodes.append(helper.make_node(
                "Conv", conv_inputs, [out], name=_unique(graph, tag + "_conv"), kernel_shape=[r1 - r0 + 1, c1 - c0 + 1],
                pads=[pad_h - r0, pad_w - c0, r1 - pad_h, c1 - pad_w], strides=[1, 1], group=1))
            parts.append(out)
    mid = _unique(graph, base + PHASE_CONCAT_SUFFIX + "_out")
    nodes.append(helper.make_node("Concat", parts, [mid], name=_unique(graph, base + PHASE_CONCAT_SUFFIX), axis=1))
    nodes.append(helper.make_node("DepthToSpace", [mid], [node.output[0]], name=_unique(graph, base + "_d2s"),
                                  blocksize=stride, mode="DCR"))
    return nodes


def tie_phase_ranges(model, ranges: dict) -> dict:
    """``ranges`` with every phase Conv output of a split deconvolution given the range of
    their Concat (the tensor the unsplit Conv produced): the phases then share one scale, so
    the Concat and DepthToSpace stay int8 and every value is quantized exactly as before the
    split."""
    ranges = dict(ranges)
    for node in model.graph.node:
        if node.op_type == "Concat" and PHASE_CONCAT_SUFFIX in node.name and node.output[0] in ranges:
            for name in node.input:
                ranges[name] = ranges[node.output[0]]
    return ranges


def relu_after_depth_to_space(model) -> list:
    """``Relu -> DepthToSpace`` (FastPose's DUC: conv, BN, ReLU, pixel shuffle) becomes
    ``DepthToSpace -> Relu``.  Exact: DepthToSpace only moves values and Relu acts on each
    one.  Quantized, the DepthToSpace then reads the conv's int8 output and the Relu sits
    between a DequantizeLinear and a QuantizeLinear, where ORT CPU runs it as an int8 lookup
    (:func:`edgepose.quant.placement.relu_as_int8_lookup`), instead of dequantize, ReLU and
    DepthToSpace in float on the whole tensor.  Only where the Relu's output is read by that
    DepthToSpace alone and is no graph output.  In place; returns the DepthToSpace names."""
    graph = model.graph
    users = consumers(graph)
    outputs = {o.name for o in graph.output}
    nodes = list(graph.node)
    position = {id(n): i for i, n in enumerate(nodes)}
    done = []
    for relu in nodes:
        readers = users.get(relu.output[0], [])
        if relu.op_type != "Relu" or relu.output[0] in outputs or len(readers) != 1 \
                or readers[0][0].op_type != "DepthToSpace":
            continue
        d2s = readers[0][0]
        x, r, y, name = relu.input[0], relu.output[0], d2s.output[0], d2s.name
        moved, relu_copy = type(d2s)(), type(relu)()
        moved.CopyFrom(d2s)
        relu_copy.CopyFrom(relu)
        moved.input[0], moved.output[0] = x, r  # r now holds the rearranged, not yet rectified values
        relu_copy.input[0], relu_copy.output[0] = r, y
        graph.node[position[id(relu)]].CopyFrom(moved)
        graph.node[position[id(d2s)]].CopyFrom(relu_copy)
        done.append(name)
    return done


def global_pool_as_reduce_mean(model) -> list:
    """``GlobalAveragePool`` on a 4-D tensor becomes ``ReduceMean(axes=[2, 3], keepdims=1)``:
    the same mean (float rounding of the sum aside).  ORT's layout optimiser cannot move a
    Transpose through GlobalAveragePool (NCHW-only) but can through ReduceMean (it renumbers the
    axes), so the SE blocks of FastPose stop pinning the graph to NCHW: the int8 convs' NHWC
    layout then runs through whole residual stages (fastpose_res50: 44 -> 16 Transposes).
    Needs shape information (rank 4) on the pooled tensor.  In place; returns the node names."""
    from onnx import helper, numpy_helper

    graph = model.graph
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in
             list(graph.value_info) + list(graph.input) + list(graph.output) if vi.type.tensor_type.HasField("shape")}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    done = []
    for node in graph.node:
        if node.op_type != "GlobalAveragePool" or ranks.get(node.input[0]) != 4:
            continue
        node.op_type = "ReduceMean"
        node.attribute.append(helper.make_attribute("keepdims", 1))
        if opset >= 18:  # axes became an input in opset 18
            axes = _unique(graph, (node.name or node.output[0]) + "_axes")
            graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64), axes))
            node.input.append(axes)
        else:
            node.attribute.append(helper.make_attribute("axes", [2, 3]))
        done.append(node.name)
    return done


def deconv_ineligible(node, inits) -> str | None:
    """Why ``node`` cannot take the exact Conv -> DepthToSpace rewrite (None when it can)."""
    from onnx import numpy_helper

    at = _attrs(node)
    if node.input[1] not in inits:
        return "its weight is not a constant"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return "its bias is not a constant"
    w = numpy_helper.to_array(inits[node.input[1]])
    if w.ndim != 4:
        return f"it is {w.ndim - 2}-D, not 2-D"
    strides = [int(v) for v in at.get("strides", [1, 1])]
    if strides[0] != strides[1] or strides[0] < 2:
        return f"strides {strides} are not equal and >= 2 (DepthToSpace has one block size)"
    pads = [int(v) for v in at.get("pads", [0, 0, 0, 0])]
    for axis in (0, 1):
        if w.shape[2 + axis] - pads[axis] - pads[axis + 2] != strides[0]:
            return (f"pads {pads} with kernel {tuple(w.shape[2:])} and stride {strides[0]}: the output is not "
                    "exactly stride x the input (needs kernel - pad_begin - pad_end == stride)")
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
