"""FP16 as a strongly typed ONNX graph: FP32 inputs and outputs, FP16 inside.

The cast pass is ONNX Runtime's bundled float16 converter
(``onnxruntime.transformers.float16``, the onnxconverter-common algorithm shipped inside the
``onnxruntime`` wheel -- no new dependency), run with ``keep_io_types=True`` and a block list
that keeps the sensitive ops in FP32:

* the final layer of every output (walking back from each graph output through shape-only
  ops to the first Conv/ConvTranspose/Gemm/MatMul) -- heatmap logits and box sizes keep
  their full resolution;
* Sigmoid/Softmax/Exp/Log (head activations) and the decoder ops (TopK, ArgMax, ...);
* custom-domain ops (plugins), whose FP16 support is the plugin's business.
"""
from __future__ import annotations

from pathlib import Path

from edgepose.onnx_graph import load_model, name_nodes, producers, sort_topologically

FP32_OPS = ("Sigmoid", "Softmax", "LogSoftmax", "Exp", "Log", "TopK", "ArgMax", "ArgMin", "NonMaxSuppression",
            "Range", "CumSum", "ReduceSum", "ReduceMean", "Pow", "Sqrt", "Div")
_PASS_THROUGH = ("Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Sigmoid", "Concat",
                 "Slice", "Gather", "Cast", "Relu", "Add", "Mul", "DepthToSpace")
_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def fp32_nodes(model, keep_final: bool = True, extra=()) -> list:
    """Names of nodes the FP16 conversion keeps in FP32 (see module doc)."""
    graph = model.graph
    producer = producers(graph)
    keep = []
    for node in graph.node:
        if node.op_type in FP32_OPS or (node.domain not in ("", "ai.onnx")):
            keep.append(node.name)
    if keep_final:
        for out in graph.output:
            stack, seen = [out.name], set()
            while stack:
                node = producer.get(stack.pop())
                if node is None or node.name in seen:
                    continue
                seen.add(node.name)
                keep.append(node.name)
                if node.op_type in _LAYERS:
                    continue  # reached the final layer of this output
                if node.op_type in _PASS_THROUGH:
                    stack.extend(i for i in node.input if i in producer)
    keep.extend(extra)
    return sorted(set(keep))


def convert_fp16(model, out_path=None, keep_final: bool = True, keep_fp32=(), meta=None):
    """FP16 version of ``model`` (path or ModelProto); writes ``out_path`` atomically when
    given.  Returns ``(model_proto, kept_fp32_node_names)``."""
    import onnx

    from edgepose._deps import require
    from edgepose.io_utils import atomic_path
    from edgepose.metadata import attach_metadata, metadata_from_proto

    require("onnxruntime")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = load_model(model)
    src = onnx.ModelProto()
    src.CopyFrom(model)
    name_nodes(src)
    if meta is None:
        try:
            meta = metadata_from_proto(src)
        except Exception:  # a bare ONNX file: convert anyway
            meta = None
    block = fp32_nodes(src, keep_final=keep_final, extra=keep_fp32)
    try:
        out = convert_float_to_float16(src, keep_io_types=True, node_block_list=block)
    except Exception as exc:
        from edgepose.errors import QuantizationError

        raise QuantizationError(f"FP16 conversion failed ({exc}); check that the model is an FP32 graph "
                                "exported by `edgepose export`") from None
    sort_topologically(out.graph)  # the converter appends its input casts after their consumers
    if meta is not None:
        attach_metadata(out, meta.replace(precision="fp16", extra={**(meta.extra or {}), "fp32_nodes": block}))
    if out_path is not None:
        with atomic_path(Path(out_path)) as tmp:
            onnx.save(out, str(tmp))
    return out, block
