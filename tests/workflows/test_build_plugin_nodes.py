"""`edgepose build` of a CornerNet-Squeeze exported with CornerPool plugin nodes (issue 14):
ONNX Runtime runs the exact decomposition, the written FP16 / INT8 files keep the plugin
nodes, and the INT8 ranges equal those of the `--plugins off` build of the same weights."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from edgepose.errors import UsageError
from edgepose.export import torch2onnx
from edgepose.ops.plugin_graph import decompose_plugin_nodes
from edgepose.ort_session import create_session
from edgepose.plugins import required_plugins
from edgepose.quant.lint import lint_qdq
from edgepose.workflows.build import BuildOptions, build

from helpers.cornernet_models import export_tiny_pose, randomised_cornernet

FRAME_HW = (100, 120)  # CornerNet's canvas for it is 127x127: a fixed 127x127 export takes it


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Plugin and decomposed exports of one randomised CornerNet-Squeeze, a tiny pose model and
    5 noise frames it finds "people" on (seed 2, as test_cornernet_dynamic)."""
    import cv2

    tmp = tmp_path_factory.mktemp("cornernet_plugins")
    model = randomised_cornernet(seed=2)
    on = torch2onnx(model, tmp / "det.plugins.onnx", input_size=(127, 127), plugins="on")
    off = torch2onnx(model, tmp / "det.onnx", input_size=(127, 127), plugins="off")
    export_tiny_pose(tmp / "pose.onnx")
    (tmp / "frames").mkdir()
    for i in range(5):
        frame = np.random.default_rng(100 + i).integers(0, 255, FRAME_HW + (3,), dtype=np.uint8)
        cv2.imwrite(str(tmp / "frames" / f"{i}.png"), frame)
    return on.path, off.path, tmp


def _build(det, tmp, precision, out):
    options = BuildOptions(det=det, pose=tmp / "pose.onnx", precision=precision, calib=str(tmp / "frames"), calib_size=4,
                           out_dir=tmp / out, det_threshold=0.05, progress=False, cache_dir=tmp / "cache",
                           benchmark=False, min_agreement=0.0, calib_method="minmax" if precision == "int8" else None)
    result = build(options)
    return result, json.loads(result.report_path.read_text())


def _activation_scales(path) -> dict:
    """{quantized tensor: scale} of every activation QuantizeLinear of the graph at ``path``."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}


def _pool_types(path):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    return [(types.get(n.input[0]), types.get(n.output[0])) for n in model.graph.node if n.op_type == "CornerPool"]


def test_ort_copy_equals_the_plugins_off_export(exports):
    """Max |difference| <= 1e-5 on every output (measured: 0, the same ops; the dynamic-size
    decomposition is checked in tests/ops/test_plugin_graph.py)."""
    on, off, _ = exports
    copy, sites = decompose_plugin_nodes(on)
    assert len(sites) == 4 and required_plugins(on) == {"CornerPool"} and not required_plugins(copy)
    x = np.random.default_rng(0).standard_normal((1, 3, 127, 127)).astype(np.float32)
    got = create_session(copy).run(None, {"input": x})
    want = create_session(off).run(None, {"input": x})
    for a, b in zip(got, want):
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5


def test_fp16_build_keeps_fp16_plugin_nodes(exports):
    on, _, tmp = exports
    result, report = _build(on, tmp, "fp16", "fp16")
    path = result.outputs["det"]
    assert required_plugins(path) == {"CornerPool"}
    assert _pool_types(path) == [(TensorProto.FLOAT16, TensorProto.FLOAT16)] * 4  # CornerPool: output type = input
    assert report["models"]["det"]["plugin_nodes"]["count"] == 4
    assert report["models"]["det"]["agreement"]["final"]["people_fp32"] > 0  # ORT ran the decomposed copies
    onnx.checker.check_model(str(path))


def test_int8_build_keeps_plugin_nodes_lint_clean_with_the_plugins_off_scales(exports):
    on, off, tmp = exports
    plugged, report = _build(on, tmp, "int8", "int8_plugins")
    path = plugged.outputs["det"]
    assert required_plugins(path) == {"CornerPool"} and _pool_types(path) == [(TensorProto.FLOAT,) * 2] * 4
    assert lint_qdq(path) == [] and report["models"]["det"]["lint"] == "clean"
    assert {f["node"] for f in report["models"]["det"]["float_ops"] if f["op_type"] == "CornerPool"} == \
        {n.name for n in onnx.load(str(path)).graph.node if n.op_type == "CornerPool"}
    plain, _ = _build(off, tmp, "int8", "int8_plain")
    got, want = _activation_scales(path), _activation_scales(plain.outputs["det"])
    shared = sorted(set(got) & set(want))
    assert len(shared) >= 0.9 * len(want), (len(shared), len(want))  # onnxsim renames a few Constant outputs only
    # same images, same values up to float rounding of the two graphs: minmax scales agree to 1e-4 relative
    np.testing.assert_allclose([got[t] for t in shared], [want[t] for t in shared], rtol=1e-4)


def test_build_refuses_a_plugin_without_decomposition(exports, tmp_path):
    on, _, tmp = exports
    model = onnx.load(str(on))
    next(n for n in model.graph.node if n.op_type == "CornerPool").op_type = "HeatmapTopK"
    bad = tmp_path / "det.topk.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(UsageError, match=r"HeatmapTopK.*--plugins off"):
        build(BuildOptions(det=bad, pose=tmp / "pose.onnx", precision="int8", out_dir=tmp_path / "out", progress=False))
    assert not (tmp_path / "out").exists()
