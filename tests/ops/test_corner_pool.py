"""Corner pooling: torch op vs NumPy reference vs ONNX decomposition (ORT) vs golden vectors."""
import io

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from edgepose.errors import UsageError  # noqa: E402
from edgepose.ops import PLUGIN_DOMAIN, PLUGIN_NAMESPACE, plugin_export  # noqa: E402
from edgepose.ops.corner_pool import (  # noqa: E402
    MODES, corner_pool, corner_pool_numpy, corner_pool_onnx_model, decomposition_steps)

GOLDEN_NAMES = {"top": "TopPool", "bottom": "BottomPool", "left": "LeftPool", "right": "RightPool"}
SHAPES = [(1, 1, 4, 5), (2, 3, 7, 5), (1, 2, 1, 9), (3, 1, 6, 1), (1, 1, 1, 1), (2, 2, 17, 33), (1, 1, 64, 3)]


class _Pool(torch.nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return corner_pool(x, self.mode)


def _export(mode, x, plugins=False, dynamic=False):
    buf = io.BytesIO()
    dyn = {"x": {0: "n", 1: "c", 2: "h", 3: "w"}, "y": {0: "n", 1: "c", 2: "h", 3: "w"}} if dynamic else None
    with plugin_export(plugins):
        torch.onnx.export(_Pool(mode), (x,), buf, opset_version=19, dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes=dyn)
    return buf.getvalue()


def _ort_run(model_bytes, feed):
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


def _brute(x, mode):
    """Direct definition from the reference README table (independent of cummax)."""
    out = np.empty_like(x)
    h, w = x.shape[2:]
    for y in range(h):
        for c in range(w):
            if mode == "top":
                out[:, :, y, c] = x[:, :, y:, c].max(axis=2)
            elif mode == "bottom":
                out[:, :, y, c] = x[:, :, :y + 1, c].max(axis=2)
            elif mode == "left":
                out[:, :, y, c] = x[:, :, y, c:].max(axis=2)
            else:
                out[:, :, y, c] = x[:, :, y, :c + 1].max(axis=2)
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_golden_cornernet_pools(golden, mode):
    """Golden case `cornernet_pools` (official _cpools C++ forward on a 1x1x4x5 map)."""
    case = golden["cornernet_pools"]
    x = np.asarray(case["input_1x1x4x5"], np.float32)[None, None]
    want = np.asarray(case[GOLDEN_NAMES[mode]], np.float32)[None, None]
    np.testing.assert_allclose(corner_pool_numpy(x, mode), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(corner_pool(torch.from_numpy(x), mode).numpy(), want, rtol=0, atol=1e-6)
    got = _ort_run(_export(mode, torch.from_numpy(x)), {"x": x})
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_readme_row_example():
    """Reference README: row [1,5,2,0,3] -> LeftPool [5,5,3,3,3], RightPool [1,5,5,5,5]."""
    row = np.array([1, 5, 2, 0, 3], np.float32)[None, None, None]
    assert corner_pool_numpy(row, "left").ravel().tolist() == [5, 5, 3, 3, 3]
    assert corner_pool_numpy(row, "right").ravel().tolist() == [1, 5, 5, 5, 5]
    col = row.transpose(0, 1, 3, 2)
    assert corner_pool_numpy(col, "top").ravel().tolist() == [5, 5, 3, 3, 3]
    assert corner_pool_numpy(col, "bottom").ravel().tolist() == [1, 5, 5, 5, 5]


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("shape", SHAPES)
def test_torch_numpy_decomposition_agree_fp32(mode, shape):
    rng = np.random.default_rng(100 * MODES[mode] + SHAPES.index(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    want = _brute(x, mode)
    np.testing.assert_array_equal(corner_pool_numpy(x, mode), want)
    np.testing.assert_array_equal(corner_pool(torch.from_numpy(x), mode).numpy(), want)
    np.testing.assert_array_equal(_ort_run(_export(mode, torch.from_numpy(x)), {"x": x}), want)


@pytest.mark.parametrize("mode", list(MODES))
def test_dynamic_export_is_exact_on_other_sizes(mode):
    """Exported with dynamic N/C/H/W at 1x1x6x6, run on other sizes (incl. 1-wide, 1-tall)."""
    model = _export(mode, torch.zeros(1, 1, 6, 6), dynamic=True)
    rng = np.random.default_rng(MODES[mode])
    for shape in [(2, 3, 13, 29), (1, 2, 1, 40), (3, 1, 40, 1), (1, 1, 1, 1), (1, 1, 128, 130)]:
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(_ort_run(model, {"x": x}), corner_pool_numpy(x, mode))


@pytest.mark.parametrize("mode", list(MODES))
def test_fp16_torch_op_and_onnx_model_exact(mode):
    rng = np.random.default_rng(10 + MODES[mode])
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float16)
    want = corner_pool_numpy(x, mode)
    assert want.dtype == np.float16
    got = corner_pool(torch.from_numpy(x), mode)
    assert got.dtype == torch.float16
    np.testing.assert_array_equal(got.numpy(), want)
    model = corner_pool_onnx_model(mode, [2, 3, 9, 11], dtype="float16")
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_ort_run(model.SerializeToString(), {"X": x}), want)


def test_onnx_model_helper_dynamic_fp32():
    model = corner_pool_onnx_model("left", [None, None, None, None])
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 77)).astype(np.float32)
    np.testing.assert_array_equal(_ort_run(model.SerializeToString(), {"X": x}), corner_pool_numpy(x, "left"))


def test_decomposition_uses_only_standard_ops_and_log_steps():
    model = onnx.load_from_string(_export("right", torch.zeros(1, 2, 3, 9)))
    ops = {n.op_type for n in model.graph.node}
    assert ops <= {"Pad", "Slice", "Max", "Constant", "Identity"}, ops
    assert sum(n.op_type == "Max" for n in model.graph.node) == decomposition_steps(9) == 4
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert all(a.s == b"edge" for n in pads for a in n.attribute if a.name == "mode")


@pytest.mark.parametrize("mode", list(MODES))
def test_plugin_export_node_contract(mode):
    model = onnx.load_from_string(_export(mode, torch.zeros(2, 3, 5, 7), plugins=True))
    nodes = [n for n in model.graph.node if n.op_type == "CornerPool"]
    assert len(nodes) == 1 and len(model.graph.node) == 1
    node = nodes[0]
    assert node.domain == PLUGIN_DOMAIN
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"mode": MODES[mode], "plugin_version": b"1", "plugin_namespace": PLUGIN_NAMESPACE.encode()}
    assert MODES == {"top": 0, "bottom": 1, "left": 2, "right": 3}
    assert any(o.domain == PLUGIN_DOMAIN for o in model.opset_import)
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [2, 3, 5, 7]


def test_bad_mode_and_rank_raise_usage_error():
    with pytest.raises(UsageError, match="mode"):
        corner_pool(torch.zeros(1, 1, 2, 2), "diagonal")
    with pytest.raises(UsageError, match="rank 4"):
        corner_pool_numpy(np.zeros((2, 2)), "top")
