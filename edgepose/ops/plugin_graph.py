"""A graph with TensorRT plugin nodes as ONNX Runtime can run it, and back.

ONNX Runtime has no kernel for the plugin nodes of ``edgepose export --plugins on``.  Tools
that must run such a graph there (``edgepose build``: calibration statistics, agreement with
FP32, timing) use :func:`decompose_plugin_nodes`: a copy in which every ``CornerPool`` node is
replaced by its exact standard-op decomposition, the very subgraph ``--plugins off`` exports
(:func:`edgepose.ops.corner_pool.corner_pool_onnx_decomposition`, the same doubling plan for
the same pooled extent).  The decomposition reads the plugin's input tensor and writes its
output tensor, so every other tensor keeps its name: statistics, ranges and Q/DQ nodes found
on the copy apply to the plugin graph as they are.

:func:`restore_plugin_nodes` puts the plugin nodes back into a graph *derived* from the copy
(FP16 conversion, Q/DQ insertion) where each decomposition is still whole, reading whatever
tensor now feeds the decomposition (a Cast output in an FP16 graph) and writing its output.
The plugin's output gets its input's type and shape, as the plugin reports them to TensorRT
(``CornerPool``: float32 or float16 in, the same out).

``HeatmapTopK`` (the ``--decode`` plugin) has no graph-level decomposition here; a graph with
it raises :class:`~edgepose.errors.PluginError` naming the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from edgepose.errors import PluginError
from edgepose.onnx_graph import consumers, initializer_names, load_model, producers
from edgepose.ops import PLUGIN_DOMAIN

DECOMPOSABLE = ("CornerPool",)
_FLOAT_TYPES = {1: "float32", 10: "float16"}  # onnx.TensorProto.FLOAT / FLOAT16


@dataclass
class PluginSite:
    """One plugin node of the original graph and the names of the nodes that replaced it."""

    node: object  # a copy of the plugin's onnx.NodeProto
    replaced_by: list = field(default_factory=list)  # decomposition node names, in order

    @property
    def name(self) -> str:
        return self.node.name


def _attr_int(node, name):
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return None


def _dims(model, tensor):
    """Static dims of ``tensor`` (None where unknown) after ONNX shape inference, or None."""
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        if value.name == tensor and value.type.tensor_type.HasField("shape"):
            return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                    for d in value.type.tensor_type.shape.dim]
    return None


def _corner_pool_nodes(node, inferred, taken):
    """``(nodes, initializers)`` of the decomposition of one CornerPool plugin node."""
    from edgepose.ops.corner_pool import _AXIS_REVERSE, MODES, corner_pool_onnx_decomposition

    modes = {v: k for k, v in MODES.items()}
    mode = modes.get(_attr_int(node, "mode"))
    if mode is None or len(node.input) != 1 or len(node.output) != 1:
        raise PluginError(f"CornerPool node {node.name!r} has mode {_attr_int(node, 'mode')} or "
                          f"{len(node.input)} inputs / {len(node.output)} outputs; the plugin needs one input, one "
                          "output and mode 0-3: re-export the model with `edgepose export`")
    dims = _dims(inferred, node.input[0])
    extent = dims[_AXIS_REVERSE[mode][0]] if dims and len(dims) == 4 else None
    prefix, k = f"{node.name or 'cornerpool'}/decomposed", 1
    while prefix in taken:
        prefix, k = f"{node.name or 'cornerpool'}/decomposed{k}", k + 1
    taken.add(prefix)
    return corner_pool_onnx_decomposition(node.input[0], node.output[0], mode, extent, prefix=prefix)


def decompose_plugin_nodes(model):
    """``(copy of model, [PluginSite])``: every CornerPool plugin node replaced by its exact
    standard-op decomposition.  ``model``: path or ModelProto (not modified).  A graph
    without plugin nodes comes back as an unchanged copy and ``[]``."""
    import onnx

    from edgepose.plugins import is_plugin_node

    src = load_model(model)
    out = onnx.ModelProto()
    out.CopyFrom(src)
    found = [n for n in out.graph.node if is_plugin_node(n)]
    other = sorted({n.op_type for n in found} - set(DECOMPOSABLE))
    if other:
        raise PluginError(f"the graph has TensorRT plugin node(s) {', '.join(other)} that edgepose cannot replace by "
                          "standard ops to run on ONNX Runtime; re-export it with `edgepose export ... --plugins off`")
    sites, taken, inferred = [], set(), onnx.shape_inference.infer_shapes(out) if found else None
    for plugin in found:
        if _dims(inferred, plugin.input[0]) is None:  # downstream of a plugin node: known once that is replaced
            inferred = onnx.shape_inference.infer_shapes(out)
        nodes, inits = _corner_pool_nodes(plugin, inferred, taken)
        position = list(out.graph.node).index(plugin)
        sites.append(PluginSite(_copy(plugin), [n.name for n in nodes]))
        out.graph.node.remove(plugin)
        for offset, node in enumerate(nodes):
            out.graph.node.insert(position + offset, node)
        out.graph.initializer.extend(inits)
    if sites:
        _drop_plugin_opset(out)
    return out, sites


def _copy(node):
    import onnx

    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


def _drop_plugin_opset(model):
    keep = [o for o in model.opset_import if o.domain != PLUGIN_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def _region(graph, site, users):
    """The nodes that now stand for ``site``: its decomposition and the Casts a converter put
    inside it (FP16 keeps Max in FP32: a Cast into each Max and one back after it)."""
    by_name = {n.name: n for n in graph.node}
    missing = [n for n in site.replaced_by if n not in by_name]
    if missing:
        raise PluginError(f"cannot put plugin node {site.name!r} back: its decomposition lost {missing[:3]} "
                          "(a bug in the build; report it with the model)")
    region = {n: by_name[n] for n in site.replaced_by}
    out, grown = site.node.output[0], True
    while grown:
        grown = False
        inner = {o for n in region.values() for o in n.output}
        for node in graph.node:
            if node.op_type != "Cast" or node.name in region:
                continue
            readers = users.get(node.output[0], [])
            into = readers and all(u.name in region for u, _ in readers)
            if (node.input[0] in inner and node.input[0] != out) or into:
                region[node.name], grown = node, True
    return region


def _origin(tensor, producer):
    """``tensor`` before any Casts (a converter's Cast shared by several readers)."""
    while tensor in producer and producer[tensor].op_type == "Cast":
        tensor = producer[tensor].input[0]
    return tensor


def _site_boundary(graph, site, region, users):
    """``(input tensor, output tensor, other inputs)`` of ``region``: the input is what its
    first node reads, before any Casts (the plugin is exact in either float type, and rounding
    commutes with max); other inputs may only be Casts of it.  Raises when it is not a whole
    decomposition any more (an inner tensor read outside it, a foreign input)."""
    inner = {o for n in region.values() for o in n.output}
    out = site.node.output[0]
    consts = initializer_names(graph)
    feeds = {i for n in region.values() for i in n.input if i and i not in inner and i not in consts}
    producer = producers(graph)
    main = _origin(region[site.replaced_by[0]].input[0], producer)  # before a converter's Casts: its own type
    foreign = sorted(f for f in feeds if _origin(f, producer) != main)
    outputs = {o.name for o in graph.output}
    leaks = [t for t in inner - {out} if t in outputs or any(u.name not in region for u, _ in users.get(t, []))]
    if foreign or out not in inner or leaks:
        raise PluginError(f"cannot put plugin node {site.name!r} back: its decomposition reads {foreign[:3]} besides "
                          f"{main!r} and leaks {leaks[:3]} (a bug in the build; report it with the model)")
    return main, out, feeds - {main}


def _drop_unread_casts(graph, tensors):
    """Remove the Casts producing ``tensors`` that nothing reads any more."""
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Cast" and n.output[0] in tensors and n.output[0] not in read]:
        graph.node.remove(node)


def restore_plugin_nodes(model, sites):
    """A copy of ``model`` (a graph derived from :func:`decompose_plugin_nodes`' copy) with the
    plugin node of every ``sites`` entry in place of its decomposition; unused decomposition
    constants dropped, the plugin domain's opset imported, the plugin output typed like its
    input (a Cast after it where the graph read the decomposition's output in another type).
    Raises PluginError when a decomposition is no longer whole or its input is not
    float32/float16."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(load_model(model))
    graph = out.graph
    inferred = onnx.shape_inference.infer_shapes(out)
    known = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    for site in sites:
        users = consumers(graph)
        region = _region(graph, site, users)
        src, dst, casts = _site_boundary(graph, site, region, users)
        position = min(list(graph.node).index(n) for n in region.values())
        for node in region.values():
            graph.node.remove(node)
        new = _plugin_nodes(site, src, dst, known)
        for offset, node in enumerate(new):
            graph.node.insert(position + offset, node)
        _drop_unread_casts(graph, casts)
        _drop_values(graph, {o for n in region.values() for o in n.output} | {new[0].output[0]})
        if new[0].output[0] not in {o.name for o in graph.output}:
            graph.value_info.append(known[new[0].output[0]])
    _drop_unused_initializers(graph)
    if sites and not any(o.domain == PLUGIN_DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return out


def _elem(known, name):
    value = known.get(name)
    return value.type.tensor_type.elem_type if value is not None else None


def _plugin_nodes(site, src, dst, known):
    """The plugin node reading ``src`` (and a Cast to the type the graph reads ``dst`` in, when
    that differs); the plugin's output gets ``src``'s type and shape in ``known``."""
    import onnx

    elem = _elem(known, src)
    if elem not in _FLOAT_TYPES:
        raise PluginError(f"plugin node {site.name!r} would read {src!r} of ONNX type {elem}; the {site.node.op_type} "
                          "plugin takes float32 or float16 only (a bug in the build; report it with the model)")
    want = _elem(known, dst)
    plugin = _copy(site.node)
    plugin.input[0] = src
    plugin.output[0] = dst if want in (None, elem) else f"{dst}_{_FLOAT_TYPES[elem]}"
    typed = onnx.ValueInfoProto()
    typed.CopyFrom(known[src])
    typed.name = plugin.output[0]
    known[typed.name] = typed
    if plugin.output[0] == dst:
        return [plugin]
    return [plugin, onnx.helper.make_node("Cast", [plugin.output[0]], [dst], to=want, name=f"{site.name}_cast")]


def _drop_values(graph, names):
    keep = [v for v in graph.value_info if v.name not in names]
    del graph.value_info[:]
    graph.value_info.extend(keep)


def _drop_unused_initializers(graph):
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
