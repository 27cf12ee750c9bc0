"""Loading libedgepose_plugins.so for TensorRT: before parsing an ONNX with edgepose plugin
nodes (build) and before deserializing an engine whose manifest lists plugin ops (run)."""
from __future__ import annotations

from edgepose.errors import PluginError


def prepare_plugins(onnx_path, plugin_lib=None) -> list:
    """Load the plugin library before parsing when the graph has edgepose plugin nodes.
    Returns the sorted plugin op types (empty when none); PluginError naming the ops otherwise."""
    from edgepose import plugins

    ops = sorted(plugins.required_plugins(onnx_path))
    if not ops:
        return []
    if plugin_lib is not None:
        plugins.load(plugin_lib)
    plugins.ensure_plugins_for(onnx_path)
    return ops


def load_plugins_for_engine(ops, engine_path, plugin_lib=None):
    """Load the plugin library before deserializing an engine whose manifest lists plugin ops."""
    if not ops:
        return None
    from edgepose import plugins

    lib = plugin_lib or plugins.find_library()
    if lib is None:
        raise PluginError(f"{engine_path} uses the edgepose plugin op(s) {', '.join(sorted(ops))}, but "
                          f"{plugins.LIB_NAME} was not found. Build it with `{plugins.BUILD_COMMAND}` or set "
                          f"{plugins.ENV_VAR} to its path")
    return plugins.load(lib)
