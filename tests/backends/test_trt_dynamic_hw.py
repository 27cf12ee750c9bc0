"""TensorRT optimisation profiles of a dynamic-H/W detector export (issue 14, item 2): min /
opt / max come from the bounds `export --input-size dynamic:HxW` writes into the metadata,
checked on the TensorRT snapshot fakes (tests/fakes; see test_trt_build_logic.py)."""
import pytest
import torch
from fakes.session import TrtFakes
from helpers.trt_onnx import tiny_onnx

from edgepose.backends.trt import build as tb, profiles as tp
from edgepose.export import torch2onnx
from edgepose.metadata import ModelMeta
from edgepose.tasks import model_meta_fields


class TinyCenterNet(torch.nn.Module):
    """Stride-4 hm/wh/reg heads of one conv each: a CenterNet-shaped graph in a second."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.hm, self.wh, self.reg = (torch.nn.Conv2d(8, c, 1) for c in (2, 2, 2))

    def forward(self, x):
        y = torch.relu(self.body(x))
        return {"hm": self.hm(y), "wh": self.wh(y), "reg": self.reg(y)}


@pytest.fixture
def fakes(monkeypatch):
    return TrtFakes(monkeypatch)


@pytest.fixture(scope="module")
def dynamic_det(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trt_dynamic")
    meta = ModelMeta(model="tiny_ctdet", task="ctdet", input_size=(96, 128), **model_meta_fields("ctdet", 2))
    report = torch2onnx(TinyCenterNet().eval(), tmp / "det.onnx", meta=meta, plugins="off", dynamic_hw=(160, 224))
    assert report.verified and all(e.ok for e in report.errors)
    return report.path


def test_profiles_follow_the_export_bounds(dynamic_det):
    inputs = tp.onnx_inputs(dynamic_det)
    assert inputs == [("input", (1, 3, None, None))]
    prof = tp.compute_profiles(inputs, tp_meta(dynamic_det))
    assert prof == {"input": [[1, 3, 32, 32], [1, 3, 96, 128], [1, 3, 160, 224]]}


def test_engine_build_configures_the_dynamic_hw_profile(fakes, dynamic_det, tmp_path):
    fake = fakes.use("10.16.0.72")
    # the fake parser knows only a few ops: the same input shape and metadata on a one-node graph
    shape = [d if d is not None else name for d, name in zip(tp.onnx_inputs(dynamic_det)[0][1], "NCHW")]
    onnx_path = tiny_onnx(tmp_path / "det.onnx", shape, tp_meta(dynamic_det))
    engine = tb.onnx2engine(onnx_path, tmp_path / "det.engine", workspace_mb=64)
    assert engine.is_file()
    assert fake.last_config._profiles[0]._shapes == {"input": ((1, 3, 32, 32), (1, 3, 96, 128), (1, 3, 160, 224))}


def tp_meta(path):
    from edgepose.metadata import read_metadata

    return read_metadata(path)


def test_runner_takes_two_frame_sizes_and_names_the_export_beyond_the_range(fakes, dynamic_det, tmp_path):
    import numpy as np

    from edgepose.backends.trt.runner import TensorRTRunner
    from edgepose.errors import UsageError

    fakes.use("10.16.0.72")
    shape = [d if d is not None else name for d, name in zip(tp.onnx_inputs(dynamic_det)[0][1], "NCHW")]
    engine = tb.onnx2engine(tiny_onnx(tmp_path / "det.onnx", shape, tp_meta(dynamic_det)), timing_cache=False)
    runner = TensorRTRunner(engine)
    rng = np.random.default_rng(0)
    for hw in ((64, 96), (160, 224)):  # two keep_res input sizes inside the profile
        x = rng.standard_normal((1, 3) + hw).astype(np.float32)
        np.testing.assert_array_equal(runner.infer({"input": x})["out"], 2 * x)  # the fake engine doubles
    with pytest.raises(UsageError, match=r"needs a 192x224 input.*--input-size dynamic:192x224"):
        runner.infer({"input": np.zeros((1, 3, 192, 224), np.float32)})
    runner.close()
