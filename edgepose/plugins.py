"""Find and load ``libedgepose_plugins.so`` (the TensorRT plugins of ``plugins/``).

Loading the library registers its creators (CornerPool, HeatmapTopK; namespace "edgepose",
version "1") with TensorRT's global plugin registry through a static initialiser, so it must
be loaded once per process *before* an engine that uses them is built or deserialised::

    from edgepose import plugins
    plugins.ensure_plugins_for("det.onnx")   # no-op when the graph needs no plugin

Search order of :func:`find_library`: the environment variable ``EDGEPOSE_PLUGIN_LIB`` (a file,
or a folder holding the library), the ``edgepose`` package folder, then ``plugins/build/``
of the source checkout.  Nothing here imports TensorRT; a library that exists but fails to
load raises :class:`~edgepose.errors.PluginError` with the loader's message.
"""
from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

from edgepose.errors import PluginError
from edgepose.ops import PLUGIN_DOMAIN, PLUGIN_NAMESPACE

LIB_NAME = "libedgepose_plugins.so"
ENV_VAR = "EDGEPOSE_PLUGIN_LIB"
PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR.parent / "plugins"
BUILD_DIR = SOURCE_DIR / "build"
BUILD_COMMAND = ("cmake -S plugins -B plugins/build -DTensorRT_ROOT=/path/to/TensorRT && "
                 "cmake --build plugins/build -j")
# op_type -> plugin implemented by libedgepose_plugins.so
KNOWN_PLUGINS = ("CornerPool", "HeatmapTopK")

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


def _candidates() -> list[Path]:
    out = []
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        out.append(p / LIB_NAME if p.is_dir() else p)
    out += [PACKAGE_DIR / LIB_NAME, PACKAGE_DIR / "lib" / LIB_NAME, BUILD_DIR / LIB_NAME]
    return out


def find_library() -> str | None:
    """Path of the plugin library, or None when none of the search places has it.

    When ``EDGEPOSE_PLUGIN_LIB`` is set it must point at an existing library: a wrong path is
    an error, not a silent fallback to another copy."""
    env = os.environ.get(ENV_VAR)
    cands = _candidates()
    if env:
        if not cands[0].is_file():
            raise PluginError(f"{ENV_VAR}={env} does not name {LIB_NAME} (no such file); fix the path, "
                              f"or unset it and build the library: {BUILD_COMMAND}")
        return str(cands[0])
    for cand in cands:
        if cand.is_file():
            return str(cand)
    return None


def _not_found_message(ops=None) -> str:
    need = f"the graph needs the edgepose plugin op(s) {', '.join(sorted(ops))} but " if ops else ""
    places = ", ".join(str(p) for p in _candidates())
    return (f"{need}{LIB_NAME} was not found (looked in: {places}). Build it with `{BUILD_COMMAND}` "
            f"(see plugins/README.md) or set {ENV_VAR} to its path; or re-export the ONNX with "
            "`--plugins off` to use the standard-op decomposition instead")


def load(path: str | os.PathLike | None = None) -> str:
    """Load the plugin library once (``ctypes.CDLL`` with ``RTLD_GLOBAL``) and return its path.

    ``path`` overrides the search.  Raises :class:`PluginError` when the library is missing or
    cannot be loaded (for example TensorRT's ``libnvinfer`` or the CUDA runtime is absent)."""
    lib = str(Path(path).expanduser()) if path is not None else find_library()
    if lib is None:
        raise PluginError(_not_found_message())
    if not Path(lib).is_file():
        raise PluginError(f"{lib}: no such file. Build the plugins with `{BUILD_COMMAND}`")
    key = os.path.realpath(lib)
    with _lock:
        if key in _loaded:
            return lib
        try:
            handle = ctypes.CDLL(key, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise PluginError(
                f"{lib} exists but cannot be loaded ({exc}). It needs TensorRT's libnvinfer and the CUDA "
                "runtime it was built against on the library path (LD_LIBRARY_PATH); rebuild it on this "
                f"machine with `{BUILD_COMMAND}`") from None
        _loaded[key] = handle
    return lib


def is_loaded() -> bool:
    return bool(_loaded)


def _as_model(onnx_model):
    import onnx

    if isinstance(onnx_model, onnx.ModelProto):
        return onnx_model
    path = Path(onnx_model)
    if not path.is_file():
        raise PluginError(f"{path}: no such ONNX file")
    return onnx.load(str(path), load_external_data=False)


def _iter_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:  # subgraphs (If/Loop/Scan)
            if attr.g is not None and attr.g.node:
                yield from _iter_nodes(attr.g)
            for sub in attr.graphs:
                yield from _iter_nodes(sub)


def required_plugins(onnx_model) -> set[str]:
    """op_types of the nodes that need an edgepose TensorRT plugin (``plugin_namespace`` attribute
    "edgepose", or the "edgepose" domain); accepts a path or an ``onnx.ModelProto``."""
    model = _as_model(onnx_model)
    return {node.op_type for node in _iter_nodes(model.graph) if is_plugin_node(node)}


def is_plugin_node(node) -> bool:
    """True for a node that needs an edgepose TensorRT plugin (``plugin_namespace`` attribute
    "edgepose", or the "edgepose" domain)."""
    namespace = None
    for attr in node.attribute:
        if attr.name == "plugin_namespace":
            namespace = attr.s.decode() if isinstance(attr.s, bytes) else str(attr.s)
    return namespace == PLUGIN_NAMESPACE or node.domain == PLUGIN_DOMAIN


def ensure_plugins_for(onnx_model) -> str | None:
    """Load the plugin library when ``onnx_model`` (path or ModelProto) needs it.

    Returns the library path, or None when the graph uses no edgepose plugin.  Raises
    :class:`PluginError` naming the missing op(s) and the build command when it is absent, or
    naming op(s) this library version does not implement."""
    ops = required_plugins(onnx_model)
    if not ops:
        return None
    unknown = ops.difference(KNOWN_PLUGINS)
    if unknown:
        raise PluginError(f"the graph uses edgepose op(s) {', '.join(sorted(unknown))} that this edgepose "
                          f"does not implement (known: {', '.join(KNOWN_PLUGINS)}); upgrade edgepose or "
                          "re-export the ONNX with `--plugins off`")
    lib = find_library()
    if lib is None:
        raise PluginError(_not_found_message(ops))
    return load(lib)
