"""Q/DQ placement fix applied after ``quantize_static`` so ONNX Runtime CPU keeps more of
the graph in INT8, while the graph stays within TensorRT's explicit-quantization rules
(symmetric int8, every activation DequantizeLinear fed by a QuantizeLinear of the same scale;
checked by :mod:`edgepose.quant.lint`).

* :func:`quantize_through_data_movement`: a ``DepthToSpace`` (from the ``--cpu-rewrite``
  deconvolution rewrite) between a quantized Conv and a float consumer ran in float on 4x the
  bytes, with a layout transpose on each side.  A Q/DQ pair with its input's scale after it
  (DepthToSpace only moves values, so that is exact) lets ORT's QDQ optimiser drop both
  pairs and run it on int8, straight from the QLinearConv output.
* :func:`relu_as_int8_lookup` (CPU targets): a ``Relu`` between a DequantizeLinear and a
  QuantizeLinear ran in float (dequantize, max, quantize: three passes over a float tensor)
  between two QLinearConvs.  ORT fuses ``DQ -> LeakyRelu -> Q`` into ``QLinearLeakyRelu`` (one
  int8 -> int8 table lookup), and ``LeakyRelu(alpha=0)`` *is* ``Relu``, so the rewrite is exact
  and keeps the same two scales; the Q/DQ graph stays symmetric int8.  A Relu feeding several
  QuantizeLinear nodes (a residual fork) needs :func:`share_equal_quantize` first.
* :func:`share_equal_quantize` + :func:`activations_as_uint8` (CPU targets): one
  QuantizeLinear per ReLU fork, activations stored as uint8 + 128 (exact), so ORT CPU fuses
  int8 forks (see the functions).
* :func:`quantize_equal_scale_concats`: the Concat of a split deconvolution's phase convs
  (which share one scale) gets a Q/DQ pair with that scale, so ORT runs it as QLinearConcat.
* :func:`single_reader_conv_outputs` (CPU targets): a conv whose quantized output feeds
  several float ops (SE blocks) gets one identity reader, so ORT runs it as QLinearConv.
"""
from __future__ import annotations

import numpy as np

from edgepose.onnx_graph import consumers, producers
from edgepose.quant.rewrite import PHASE_CONCAT_SUFFIX

DATA_MOVEMENT_OPS = ("DepthToSpace",)


def _quantize_output(graph, node, scale_zp: list, readers: list):
    """Insert ``QuantizeLinear -> DequantizeLinear`` (``scale_zp``: the two tensor names) right
    after ``node`` and point its ``readers`` (``[(node, slot)]``) at the dequantized copy."""
    from onnx import helper

    out = node.output[0]
    q_out, dq_out = f"{out}_int8", f"{out}_int8_dequantized"
    new = [helper.make_node("QuantizeLinear", [out, *scale_zp], [q_out], name=f"{node.name}_output_Q"),
           helper.make_node("DequantizeLinear", [q_out, *scale_zp], [dq_out], name=f"{node.name}_output_DQ")]
    for user, slot in readers:
        user.input[slot] = dq_out
    position = list(graph.node).index(node) + 1
    for offset, extra in enumerate(new):
        graph.node.insert(position + offset, extra)


def quantize_through_data_movement(model, ops=DATA_MOVEMENT_OPS) -> list:
    """After every ``ops`` node whose input is dequantized (DequantizeLinear fed by a
    QuantizeLinear) and whose output is not quantized yet, add a QuantizeLinear ->
    DequantizeLinear pair with the input's scale and zero point.  Exact: the op only moves
    values, so ``Q(op(DQ(q))) == op(q)``.  In place; returns the node names."""
    graph = model.graph
    producer, users = producers(graph), consumers(graph)
    outputs = {o.name for o in graph.output}
    done = []
    for node in list(graph.node):
        if node.op_type not in ops or node.output[0] in outputs:
            continue
        dq = producer.get(node.input[0])
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        out = node.output[0]
        if q is None or q.op_type != "QuantizeLinear" or not users.get(out):
            continue
        if any(user.op_type == "QuantizeLinear" for user, _ in users[out]):
            continue
        _quantize_output(graph, node, list(dq.input[1:3]), users[out])
        done.append(node.name)
    return done


def _shared_dequantizers(graph, producer: dict, users: dict):
    """``(dq, q, readers)`` for every DequantizeLinear fed by a QuantizeLinear whose output is
    read at least twice (``readers``: its ``[(node, slot)]``) and is not a graph output.  The
    node list is read up front, so callers may insert nodes while they go."""
    outputs = {o.name for o in graph.output}
    for dq in list(graph.node):
        if dq.op_type != "DequantizeLinear" or dq.output[0] in outputs:
            continue
        q = producer.get(dq.input[0])
        readers = users.get(dq.output[0], [])
        if q is not None and q.op_type == "QuantizeLinear" and len(readers) >= 2:
            yield dq, q, readers


def dedicated_pair_per_reader(model, fused_ops=("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")) -> list:
    """Give every reader of a shared activation DequantizeLinear its own QuantizeLinear ->
    DequantizeLinear pair (same scale and zero point: the values each reader sees are
    unchanged, so it is exact).  ``quantize_static`` hands one DQ to a quantized op *and* the
    float ops reading the same tensor (DLA-34: the projection conv and the Concat after each
    MaxPool, a conv and a MaxPool after a Relu).  ORT then duplicates the DQ, its QuantizeLinear
    has two DQ readers, and ORT's int8 -> uint8 conversion of Q/DQ pairs (which needs one DQ
    per Q) leaves that pair int8 while the conv's output pair becomes uint8: QLinearConv needs
    one type in and out, so the conv ran in float (measured, ORT 1.32).  Only where a reader is
    one of ``fused_ops`` and the tensor's producer is not (its own fusion needs one Q after it).
    In place; returns the DequantizeLinear names."""
    import onnx

    graph = model.graph
    producer, users = producers(graph), consumers(graph)
    done = []
    for dq, q, entries in _shared_dequantizers(graph, producer, users):
        readers = list(dict.fromkeys(node.name for node, _ in entries))
        if len(readers) < 2:
            continue
        src = producer.get(q.input[0])
        by_name = {node.name: node for node, _ in entries}
        if (src is not None and src.op_type in fused_ops) or not any(by_name[r].op_type in fused_ops for r in readers):
            continue
        position = list(graph.node).index(dq) + 1
        for k, name in enumerate(readers[1:], 1):
            pair = [onnx.NodeProto(), onnx.NodeProto()]
            pair[0].CopyFrom(q)
            pair[1].CopyFrom(dq)
            pair[0].name, pair[1].name = f"{q.name}_reader{k}", f"{dq.name}_reader{k}"
            pair[0].output[0] = pair[1].input[0] = f"{q.output[0]}_reader{k}"
            pair[1].output[0] = f"{dq.output[0]}_reader{k}"
            reader = by_name[name]
            for slot, tensor in enumerate(reader.input):
                if tensor == dq.output[0]:
                    reader.input[slot] = pair[1].output[0]
            graph.node.insert(position, pair[0])
            graph.node.insert(position + 1, pair[1])
            position += 2
        done.append(dq.name)
    return done


def quantize_equal_scale_concats(model, name_part: str | None = PHASE_CONCAT_SUFFIX) -> list:
    """After every ``Concat`` whose inputs are all dequantized (DequantizeLinear fed by a
    QuantizeLinear) with one and the same scale and zero point -- the phase Convs of a split
    deconvolution, whose ranges :func:`edgepose.quant.rewrite.tie_phase_ranges` ties -- and
    whose output is not quantized yet, add a QuantizeLinear -> DequantizeLinear pair with that
    scale.  Exact (Concat only moves values); ORT then runs the Concat on int8 and the
    DepthToSpace after it too.  ``name_part``: only Concats whose name contains it (default: the
    split deconvolutions' own, so other graphs -- TensorRT's included -- are left as they
    are); None for every Concat.  In place; returns the node names."""
    from onnx import numpy_helper

    graph = model.graph
    producer, users = producers(graph), consumers(graph)
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    done = []
    for node in list(graph.node):
        out = node.output[0]
        if node.op_type != "Concat" or (name_part and name_part not in node.name) \
                or out in outputs or not users.get(out) \
                or any(user.op_type == "QuantizeLinear" for user, _ in users[out]):
            continue
        dqs = [producer.get(name) for name in node.input]
        if not all(dq is not None and dq.op_type == "DequantizeLinear" and len(dq.input) == 3
                   and producer.get(dq.input[0]) is not None and producer[dq.input[0]].op_type == "QuantizeLinear"
                   for dq in dqs):
            continue
        params = [(consts.get(dq.input[1]), consts.get(dq.input[2])) for dq in dqs]
        first = params[0]
        if first[0] is None or first[0].size != 1 or not all(
                p[0] is not None and p[1] is not None and p[0].shape == first[0].shape and p[1].dtype == first[1].dtype
                and float(p[0]) == float(first[0]) and int(p[1]) == int(first[1]) for p in params):
            continue
        _quantize_output(graph, node, list(dqs[0].input[1:3]), users[out])
        done.append(node.name)
    return done


def single_reader_conv_outputs(model, quantized_ops=("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")) -> list:
    """CPU targets: ORT CPU fuses ``DQ -> Conv -> Q`` into a QLinearConv only when the
    DequantizeLinear after that Q has one reader (measured, ORT 1.32); a conv whose quantized
    output goes on to several float ops -- the conv3 before each SE block (GlobalAveragePool
    and Mul), DLA-34's offset/mask convs (Slices) -- ran as a float conv.  This gives such a
    DequantizeLinear one reader, an identity ``LeakyRelu(alpha=1)``, which the float readers
    read instead: the conv runs as QLinearConv and the values the readers see are unchanged.
    Only where no reader is a quantized op or a QuantizeLinear (those take their own DQ).
    In place; returns the DequantizeLinear names."""
    from onnx import helper

    graph = model.graph
    producer, users = producers(graph), consumers(graph)
    done = []
    for dq, q, readers in _shared_dequantizers(graph, producer, users):
        src = producer.get(q.input[0])
        if src is None or src.op_type != "Conv" or len(users.get(q.input[0], [])) != 1 \
                or len(users.get(q.output[0], [])) != 1:
            continue
        if any(r.op_type in quantized_ops or r.op_type in ("QuantizeLinear", "DequantizeLinear") for r, _ in readers):
            continue
        out = f"{dq.output[0]}_one_reader"
        node = helper.make_node("LeakyRelu", [dq.output[0]], [out], name=f"{dq.name}_one_reader", alpha=1.0)
        for reader, slot in readers:
            reader.input[slot] = out
        graph.node.insert(list(graph.node).index(dq) + 1, node)
        done.append(dq.name)
    return done


def relu_as_int8_lookup(model) -> list:
    """Turn every ``DQ -> Relu -> Q`` (one QuantizeLinear consumer) into ``LeakyRelu(alpha=0)``.
    In place; returns the node names."""
    from onnx import helper

    graph = model.graph
    producer, users = producers(graph), consumers(graph)
    done = []
    for node in graph.node:
        if node.op_type != "Relu":
            continue
        src = producer.get(node.input[0])
        out_users = users.get(node.output[0], [])
        if src is None or src.op_type != "DequantizeLinear" or len(out_users) != 1 \
                or out_users[0][0].op_type != "QuantizeLinear":
            continue
        node.op_type = "LeakyRelu"
        node.attribute.append(helper.make_attribute("alpha", 0.0))
        done.append(node.name)
    return done


# History (ORT 1.32, centernet_res18 512x512): sharing one QuantizeLinear between the dedicated
# DequantizeLinear nodes of a residual fork stopped ORT fusing half the convs (25 -> 11) while the
# activations were int8 -- ORT's QDQS8ToU8 pass converts only single-reader pairs to uint8 and its
# CPU selectors reject int8 activations.  With activations_as_uint8 the shared QuantizeLinear
# fuses (share_equal_quantize).  ORT's ReluQuantFusion (zero point at the type's minimum) is not
# exact for clipped ranges and is not used.


U8_ZERO_POINT = "edgepose_uint8_zero_point_128"
S8_ZERO_POINT = "edgepose_int8_zero_point_0"


def share_equal_quantize(model, producer_ops=("Relu", "LeakyRelu")) -> list:
    """One QuantizeLinear per (tensor, scale, zero point): the dedicated pairs of a fork (a
    residual ReLU read by the next block's conv and the next Add) quantize the same tensor with
    the same parameters, so one QuantizeLinear can feed all their DequantizeLinear nodes
    (exact).  ORT CPU fuses such int8 forks only with uint8 activations
    (:func:`activations_as_uint8`).  Only for tensors ``producer_ops`` make (the ReLU forks; a
    MaxPool's shared QuantizeLinear made ORT move it in front of the pool and run a slow uint8
    NCHW MaxPool, 6 -> 91 ms on centernet_res18).  In place; returns the names of the
    QuantizeLinear kept."""
    from onnx import numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    users, producer = consumers(graph), producers(graph)
    outputs = {o.name for o in graph.output}
    kept, remove, shared = {}, [], []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3 or node.output[0] in outputs:
            continue
        src = producer.get(node.input[0])
        if src is None or src.op_type not in producer_ops:
            continue
        scale, zp = consts.get(node.input[1]), consts.get(node.input[2])
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            continue
        key = (node.input[0], float(scale), int(zp), str(zp.dtype))
        if key not in kept:
            kept[key] = node
            continue
        for user, slot in users.get(node.output[0], []):
            user.input[slot] = kept[key].output[0]
        remove.append(node)
        if kept[key].name not in shared:
            shared.append(kept[key].name)
    for node in remove:
        graph.node.remove(node)
    return shared


def activations_as_uint8(model) -> list:
    """CPU targets: every activation QuantizeLinear/DequantizeLinear with the symmetric int8
    zero point 0 uses uint8 with zero point 128 instead, the same scale: ``q_u8 = q_s8 + 128``
    for every value, clamps included, so the graph computes the same numbers.  ORT CPU runs
    u8 activations x s8 weights either way (its ``QDQS8ToU8`` pass converts), but that pass
    leaves a QuantizeLinear with several readers in int8, and ORT's CPU selectors then fuse
    neither it nor its readers; in uint8 they do.  Weights stay int8.  In place; returns the
    node names."""
    from onnx import numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    done = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in consts:
            continue  # a weight (or bias): stays int8
        zp = consts.get(node.input[2])
        if zp is None or zp.dtype != np.int8 or zp.size != 1 or int(zp) != 0:
            continue
        node.input[2] = U8_ZERO_POINT
        done.append(node.name)
    if done and U8_ZERO_POINT not in consts:
        graph.initializer.append(numpy_helper.from_array(np.array(128, np.uint8), U8_ZERO_POINT))
    used = {name for n in graph.node for name in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return done


def activations_as_int8(model) -> list:
    """The inverse of :func:`activations_as_uint8` (exact): uint8 activations with zero point 128
    back to int8 with zero point 0 -- the symmetric int8 graph TensorRT's rules are checked on.
    In place; returns the node names."""
    from onnx import numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    done = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        zp = consts.get(node.input[2])
        if zp is None or zp.dtype != np.uint8 or zp.size != 1 or int(zp) != 128 \
                or (node.op_type == "DequantizeLinear" and node.input[0] in consts):
            continue
        node.input[2] = S8_ZERO_POINT
        done.append(node.name)
    if done and S8_ZERO_POINT not in consts:
        graph.initializer.append(numpy_helper.from_array(np.array(0, np.int8), S8_ZERO_POINT))
    return done
