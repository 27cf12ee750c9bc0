"""Runners: ONNX Runtime and PyTorch agree on the same model; infer() validates its feed;
the factory picks the backend from the file and falls back from .engine to .onnx."""
import logging
import sys

import numpy as np
import onnx
import pytest

from edgepose.backends import load_runner
from edgepose.backends.onnxruntime import ORTRunner
from edgepose.errors import DependencyError, MetadataError, UsageError
from edgepose.metadata import ModelMeta, attach_metadata
from helpers.optional import torch_or_skip

torch = torch_or_skip()


def _tiny_heads_model():
    torch.manual_seed(0)

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.ReLU())
            self.hm = torch.nn.Conv2d(8, 2, 1)
            self.wh = torch.nn.Conv2d(8, 2, 3, padding=1)

        def forward(self, x):
            f = self.body(x)
            return {"hm": self.hm(f), "wh": self.wh(f)}

    return Heads().eval()


META = ModelMeta(model="tiny", task="ctdet", input_size=(32, 32), output_names=["hm", "wh"],
                 heads={"hm": {"channels": 2, "stride": 4, "activation": "sigmoid"},
                        "wh": {"channels": 2, "stride": 4, "activation": None}}, num_classes=2, batch=None)


def _export(model, path, batch=None, meta=META):
    x = torch.zeros(2 if batch is None else batch, 3, 32, 32)
    dyn = {"input": {0: "n"}, "hm": {0: "n"}, "wh": {0: "n"}} if batch is None else None
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["hm", "wh"],
                      dynamic_axes=dyn, opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    if meta is not None:
        attach_metadata(proto, meta.replace(batch=batch))
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("runners")
    model = _tiny_heads_model()
    return model, _export(model, d / "dyn.onnx"), _export(model, d / "b1.onnx", batch=1), \
        _export(model, d / "bare.onnx", meta=None)


def test_ort_and_torch_runner_agree(tiny):
    from edgepose.backends.torch_runner import TorchRunner

    model, dyn, _, _ = tiny
    ort_runner = ORTRunner(dyn, threads=1)
    torch_runner = TorchRunner(model, meta=META)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    a = ort_runner.infer({"input": x})
    b = torch_runner.infer({"input": x})
    assert sorted(a) == sorted(b) == ["hm", "wh"]
    for name in a:
        assert a[name].shape == b[name].shape == (3, 2, 8, 8)
        scale = float(np.abs(b[name]).max())
        assert scale > 0
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-5 * scale)


def test_ort_runner_specs_and_meta(tiny):
    _, dyn, b1, bare = tiny
    r = ORTRunner(dyn)
    assert r.inputs[0].name == "input" and r.inputs[0].shape == (None, 3, 32, 32)
    assert r.inputs[0].dtype == np.float32
    assert [o.name for o in r.outputs] == ["hm", "wh"]
    assert r.max_batch is None and r.meta.model == "tiny" and r.meta.task == "ctdet"
    r1 = ORTRunner(b1, disable_cse=True)
    assert r1.max_batch == 1 and r1.inputs[0].shape == (1, 3, 32, 32)
    assert ORTRunner(bare).meta is None


def test_infer_rejects_bad_feeds(tiny):
    from edgepose.backends.torch_runner import TorchRunner

    _, _, b1, _ = tiny
    good = np.zeros((1, 3, 32, 32), np.float32)
    for runner in (ORTRunner(b1), TorchRunner(tiny[0], meta=META)):
        with pytest.raises(UsageError, match="do not match the model inputs"):
            runner.infer({"images": good})
        with pytest.raises(UsageError, match="missing"):
            runner.infer({})
        with pytest.raises(UsageError, match="dtype float64"):
            runner.infer({"input": good.astype(np.float64)})
        with pytest.raises(UsageError, match="shape"):
            runner.infer({"input": np.zeros((1, 4, 32, 32), np.float32)})
        with pytest.raises(UsageError, match="numpy array"):
            runner.infer({"input": good.tolist()})
    ort_b1 = ORTRunner(b1)
    with pytest.raises(UsageError, match=r"expected 1x3x32x32"):
        ort_b1.infer({"input": np.zeros((2, 3, 32, 32), np.float32)})
    with pytest.raises(UsageError, match="shape"):
        ort_b1.infer({"input": np.zeros((1, 3, 64, 32), np.float32)})


def test_factory_picks_backend_and_overrides(tiny, tmp_path):
    _, dyn, _, bare = tiny
    assert load_runner(dyn).backend == "onnxruntime"
    with pytest.raises(UsageError, match="unknown backend"):
        load_runner(dyn, backend="tflite")
    with pytest.raises(UsageError, match="torch backend runs zoo models"):
        load_runner(dyn, backend="torch")
    with pytest.raises(UsageError, match="unknown model kind"):
        load_runner(tmp_path / "model.tflite")
    # no metadata: overrides build one from the output names
    r = load_runner(bare, meta_overrides={"input_size": (32, 32), "mean": (0.5, 0.5, 0.5)})
    assert r.meta.task == "ctdet" and r.meta.input_size == (32, 32) and r.meta.mean == (0.5, 0.5, 0.5)
    # metadata present: overrides replace fields
    r = load_runner(dyn, meta_overrides={"std": (2.0, 2.0, 2.0)})
    assert r.meta.std == (2.0, 2.0, 2.0) and r.meta.model == "tiny"


def test_engine_falls_back_to_sibling_onnx(tiny, tmp_path, caplog, monkeypatch):
    _, dyn, _, _ = tiny
    engine = tmp_path / "det.engine"
    engine.write_bytes(b"not an engine")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # a machine without TensorRT, whatever this one has
    with pytest.raises(DependencyError, match="det.onnx"):
        load_runner(engine)  # no sibling .onnx yet
    (tmp_path / "det.onnx").write_bytes(dyn.read_bytes())
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        runner = load_runner(engine)
    assert runner.backend == "onnxruntime" and runner.path == tmp_path / "det.onnx"
    assert any("ONNX Runtime" in rec.getMessage() for rec in caplog.records)
    with pytest.raises(DependencyError):
        load_runner(engine, backend="tensorrt")


def test_pipeline_needs_metadata(tiny):
    from edgepose.pipeline.pipeline import Pipeline

    _, dyn, _, bare = tiny
    with pytest.raises(MetadataError, match="--input-size/--mean/--std"):
        Pipeline(ORTRunner(bare), ORTRunner(dyn))
