"""ONNX graph helpers shared by export, quant and the runtime (one home for each).

* :func:`load_model` -- a ModelProto from a path or a ModelProto (typed error for bad files);
* :func:`producers` / :func:`consumers` -- who writes / reads each tensor;
* :func:`initializer_names`, :func:`real_inputs`, :func:`first_real_input` -- the graph's
  inputs that are not weights;
* :func:`input_shape` -- name and concrete shape of the first real input (dynamic dims -> 1).

Bottom layer: imports only ``onnx`` (lazily) and errors.
"""
from __future__ import annotations

from edgepose.errors import EdgeposeError, MetadataError


def load_model(model_or_path, load_external_data: bool = True, error=MetadataError):
    """``model_or_path`` as an ``onnx.ModelProto`` (returned as is when it already is one).
    A missing or unreadable file raises ``error`` naming the path and the fix."""
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    try:
        return onnx.load(str(model_or_path), load_external_data=load_external_data)
    except FileNotFoundError:
        raise error(f"{model_or_path}: no such file; check the path or export it with `edgepose export`") from None
    except EdgeposeError:
        raise
    except Exception as exc:  # protobuf DecodeError and friends
        raise error(f"{model_or_path} is not a readable ONNX file ({exc}); re-export it") from None


def producers(graph) -> dict:
    """tensor name -> the node that outputs it."""
    return {out: node for node in graph.node for out in node.output}


def consumers(graph) -> dict:
    """tensor name -> ``[(node, input slot), ...]`` of the nodes that read it."""
    users: dict = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name:
                users.setdefault(name, []).append((node, slot))
    return users


def initializer_names(graph) -> set:
    return {init.name for init in graph.initializer}


def real_inputs(graph) -> list:
    """The graph inputs that are not initializers (old exporters list weights as inputs too)."""
    weights = initializer_names(graph)
    return [value for value in graph.input if value.name not in weights]


def first_real_input(graph):
    """The first graph input that is not an initializer (the image input of our models)."""
    inputs = real_inputs(graph)
    if not inputs:
        raise MetadataError("the ONNX graph has no input besides its weights; re-export the model")
    return inputs[0]


def input_shape(model) -> tuple:
    """``(name, shape)`` of the first real input of ``model`` (ModelProto or path); dynamic or
    unknown dimensions read as 1."""
    value = first_real_input(load_model(model, load_external_data=False).graph)
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
            for d in value.type.tensor_type.shape.dim]
    return value.name, tuple(dims)


def name_nodes(model):
    """Give every node of ``model`` a unique name (``<op_type>_<k>`` for unnamed or repeated
    ones), in place; quantization and FP16 conversion address nodes by name."""
    used, k = set(), 0
    for node in model.graph.node:
        if not node.name or node.name in used:
            while f"{node.op_type}_{k}" in used:
                k += 1
            node.name = f"{node.op_type}_{k}"
        used.add(node.name)
    return model


def sort_topologically(graph):
    """Reorder ``graph.node`` in place so every node comes after the producers of its inputs
    (TensorRT's parser and ``onnx.checker`` require it; some converters append nodes at the
    end).  Stable: nodes already in order keep their order.  Subgraphs are not visited."""
    available = {i.name for i in graph.input} | initializer_names(graph) | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:  # one pass in the current order: a sorted graph keeps its order
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):  # a cycle or an input nobody produces: leave the rest as it was
            ordered.extend(rest)
            break
        pending = rest
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    return graph
