"""edgepose.plugins: finding/loading libedgepose_plugins.so and naming what is missing."""
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.optional import torch_or_skip

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from edgepose import plugins  # noqa: E402
from edgepose.errors import PluginError  # noqa: E402


@pytest.fixture
def no_library(monkeypatch, tmp_path):
    """Point every search place at an empty folder."""
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    monkeypatch.setattr(plugins, "PACKAGE_DIR", tmp_path / "pkg")
    monkeypatch.setattr(plugins, "BUILD_DIR", tmp_path / "build")
    return tmp_path


def corner_pool_model(nested=False):
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 3, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2, 3, 4])
    node = helper.make_node("CornerPool", ["X"], ["Y"], domain="edgepose", mode=2, plugin_version="1",
                            plugin_namespace="edgepose")
    if nested:  # plugin inside an If branch
        branch = helper.make_graph([node], "then", [], [y])
        cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        node = helper.make_node("If", ["c"], ["Y"], then_branch=branch, else_branch=branch)
        graph = helper.make_graph([node], "g", [x, cond], [y])
    else:
        graph = helper.make_graph([node], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("edgepose", 1)])


def heatmap_topk_model(plugin):
    torch_or_skip()
    from edgepose.ops.heatmap_topk import heatmap_topk_onnx_model

    return heatmap_topk_onnx_model((1, 3, 8, 8), K=5, plugin=plugin)


def test_required_plugins_in_exported_graph(tmp_path):
    model = heatmap_topk_model(plugin=True)
    assert plugins.required_plugins(model) == {"HeatmapTopK"}
    path = tmp_path / "det.onnx"
    onnx.save(model, str(path))
    assert plugins.required_plugins(str(path)) == {"HeatmapTopK"}
    assert plugins.required_plugins(heatmap_topk_model(plugin=False)) == set()
    assert plugins.required_plugins(corner_pool_model()) == {"CornerPool"}
    assert plugins.required_plugins(corner_pool_model(nested=True)) == {"CornerPool"}


def test_missing_library_names_op_and_build_command(no_library):
    with pytest.raises(PluginError) as info:
        plugins.ensure_plugins_for(corner_pool_model())
    msg = str(info.value)
    assert "CornerPool" in msg
    assert "cmake -S plugins -B plugins/build" in msg and "cmake --build plugins/build" in msg
    assert "--plugins off" in msg
    with pytest.raises(PluginError, match="HeatmapTopK"):
        plugins.ensure_plugins_for(heatmap_topk_model(plugin=True))
    with pytest.raises(PluginError, match="cmake -S plugins"):
        plugins.load()
    assert plugins.find_library() is None


def test_decomposed_graph_needs_nothing(no_library):
    assert plugins.ensure_plugins_for(heatmap_topk_model(plugin=False)) is None


def test_unknown_edgepose_op(no_library):
    model = corner_pool_model()
    model.graph.node[0].op_type = "FancyOp"
    with pytest.raises(PluginError, match="FancyOp"):
        plugins.ensure_plugins_for(model)


def test_env_var_to_missing_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(plugins.ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(PluginError, match=plugins.ENV_VAR):
        plugins.find_library()


def test_unloadable_library_raises(monkeypatch, tmp_path):
    bad = tmp_path / plugins.LIB_NAME
    bad.write_bytes(b"not an ELF file")
    monkeypatch.setenv(plugins.ENV_VAR, str(tmp_path))
    with pytest.raises(PluginError, match="cannot be loaded"):
        plugins.load()


def test_load_once(monkeypatch, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a stand-in shared library")
    src = tmp_path / "stub.c"
    src.write_text("int edgepose_stub(void) { return 42; }\n")
    lib = tmp_path / plugins.LIB_NAME
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    monkeypatch.setenv(plugins.ENV_VAR, str(lib))
    monkeypatch.setattr(plugins, "_loaded", {})
    assert plugins.load() == str(lib)
    handle = plugins._loaded[str(Path(lib).resolve())]
    assert handle.edgepose_stub() == 42
    assert plugins.load() == str(lib) and len(plugins._loaded) == 1
    assert plugins.ensure_plugins_for(corner_pool_model()) == str(lib)
    assert plugins.is_loaded()
