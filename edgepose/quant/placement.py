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
  QuantizeLinear nodes (a residual fork) stays: ORT's fusion needs one.
"""
from __future__ import annotations

from edgepose.onnx_graph import consumers, producers

DATA_MOVEMENT_OPS = ("DepthToSpace",)


def quantize_through_data_movement(model, ops=DATA_MOVEMENT_OPS) -> list:
    """After every ``ops`` node whose input is dequantized (DequantizeLinear fed by a
    QuantizeLinear) and whose output is not quantized yet, add a QuantizeLinear ->
    DequantizeLinear pair with the input's scale and zero point.  Exact: the op only moves
    values, so ``Q(op(DQ(q))) == op(q)``.  In place; returns the node names."""
    from onnx import helper

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
        scale_zp = list(dq.input[1:3])
        q_out, dq_out = f"{out}_int8", f"{out}_int8_dequantized"
        new = [helper.make_node("QuantizeLinear", [out, *scale_zp], [q_out], name=f"{node.name}_output_Q"),
               helper.make_node("DequantizeLinear", [q_out, *scale_zp], [dq_out], name=f"{node.name}_output_DQ")]
        for user, slot in users[out]:
            user.input[slot] = dq_out
        position = list(graph.node).index(node) + 1
        for offset, extra in enumerate(new):
            graph.node.insert(position + offset, extra)
        done.append(node.name)
    return done


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
    outputs = {o.name for o in graph.output}
    done = []
    for dq in list(graph.node):
        q = producer.get(dq.input[0]) if dq.op_type == "DequantizeLinear" else None
        readers = list(dict.fromkeys(node.name for node, _ in users.get(dq.output[0], [])))
        if q is None or q.op_type != "QuantizeLinear" or len(readers) < 2 or dq.output[0] in outputs:
            continue
        src = producer.get(q.input[0])
        by_name = {node.name: node for node, _ in users[dq.output[0]]}
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


# Tried and rejected (ORT 1.32, centernet_res18 512x512): sharing one QuantizeLinear between the
# dedicated DequantizeLinear nodes of a residual fork saves a quantization per fork but stops
# ORT's QDQ selectors from fusing more than half of the convs (25 -> 11 QLinearConv).  A float
# Relu between two QLinearConvs cannot be fused on ORT with symmetric int8: its ReluQuantFusion
# needs the zero point at the type's minimum (-128), which TensorRT's rules forbid.
