"""`edgepose export-triton` without a server: every config.pbtxt parses into tritonclient's
ModelConfig protobuf; det/pose names, types and dims match the ONNX files; the variants that
cannot run here (onnxruntime, tensorrt_plan) are checked this way; the shipped code imports
without torch/onnx/tritonclient; bad input gets one clear error."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepose.errors import DependencyError, UsageError
from helpers.optional import torch_or_skip

torch_or_skip()  # exporting the default models (once, cached)
# a test dependency (pip install -e '.[triton]'; make test installs it): the real protobuf schema
import tritonclient.grpc.model_config_pb2 as model_config_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402  (comes with tritonclient[grpc])

MODELS = ("det", "pose", "crop", "decode", "edgepose")
TYPE = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.uint8): "TYPE_UINT8"}


@pytest.fixture(scope="module")
def defaults():
    from edgepose.models.defaults import default_model_paths

    return default_model_paths()


def _parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _io(cfg_list):
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in cfg_list]


def _onnx_io(path, drop_batch):
    from edgepose.serving.repository import onnx_io

    def conv(items):
        return [(n, TYPE[np.dtype(t)], tuple(-1 if d is None else d for d in (dims[1:] if drop_batch else dims)))
                for n, t, dims in items]

    ins, outs = onnx_io(path)
    return conv(ins), conv(outs)


@pytest.mark.parametrize("backend", ["python", "onnxruntime", "tensorrt"])
def test_configs_parse_and_match_the_onnx(tmp_path, defaults, backend):
    from edgepose.serving.repository import write_repository

    det, pose = defaults
    repo = tmp_path / "repo"
    write_repository(det, pose, repo, backend=backend, max_batch=6)
    cfg = {name: _parse(repo / name / "config.pbtxt") for name in MODELS}
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(MODELS)
    for name, c in cfg.items():
        assert c.name == name
    want = {"python": ("", "python"), "onnxruntime": ("onnxruntime_onnx", "onnxruntime"),
            "tensorrt": ("tensorrt_plan", "")}[backend]
    for name in ("det", "pose"):
        assert (cfg[name].platform, cfg[name].backend) == want
    assert cfg["det"].max_batch_size == 0
    kind = "KIND_CPU" if backend == "python" else "KIND_GPU"
    for name in ("det", "pose"):
        assert model_config_pb2.ModelInstanceGroup.Kind.Name(cfg[name].instance_group[0].kind) == kind
    assert cfg["crop"].instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (_io(cfg["det"].input), _io(cfg["det"].output)) == _onnx_io(det, drop_batch=False)
    assert cfg["pose"].max_batch_size == 6 and cfg["pose"].HasField("dynamic_batching")
    assert (_io(cfg["pose"].input), _io(cfg["pose"].output)) == _onnx_io(pose, drop_batch=True)
    entry = cfg["edgepose"]
    assert entry.backend == "python" and entry.max_batch_size == 0
    assert _io(entry.input) == [("IMAGE", "TYPE_UINT8", (-1, -1, 3))]
    assert _io(entry.output) == [("BOXES", "TYPE_FP32", (-1, 4)), ("BOX_SCORES", "TYPE_FP32", (-1,)),
                                 ("KEYPOINTS", "TYPE_FP32", (-1, 17, 3))]
    # crop produces exactly what pose takes; decode takes exactly what pose gives
    assert _io(cfg["crop"].output)[0][1:] == ("TYPE_FP32", (-1,) + _io(cfg["pose"].input)[0][2])
    assert [(n, t, d[1:]) for n, t, d in _io(cfg["decode"].input)[:-1]] == _io(cfg["pose"].output)
    if backend == "tensorrt":
        script = (repo / "build_plans.sh").read_text()
        assert "pose/1/model.plan" in script and "--maxShapes=input:6x3x128x96" in script
        assert (repo / "pose" / "model.onnx").is_file() and not (repo / "pose" / "1" / "model.onnx").exists()
    else:
        assert (repo / "pose" / "1" / "model.onnx").is_file()


def test_shipped_code_needs_no_torch_onnx_or_tritonclient(tmp_path, defaults):
    """The server's python imports only numpy/OpenCV: run the shipped decode model's pipeline
    with torch, onnx and tritonclient blocked, and compare it with the installed edgepose."""
    from edgepose.pipeline.decode import heatmap_to_coords
    from edgepose.serving.repository import write_repository

    repo = tmp_path / "repo"
    write_repository(*defaults, repo)
    rng = np.random.default_rng(0)
    heat = rng.random((2, 17, 32, 24), dtype=np.float32)
    boxes = np.array([[10, 20, 58, 84], [0, 0, 96, 128]], np.float32)
    np.save(tmp_path / "heat.npy", heat)
    np.save(tmp_path / "boxes.npy", boxes)
    code = f"""
import sys, json
for name in ("torch", "onnx", "tritonclient", "onnxruntime"):
    sys.modules[name] = None
sys.path.insert(0, {str(repo / 'edgepose' / 'lib')!r})
import numpy as np
import edgepose.serving.triton_models as tm
assert tm.__file__.startswith({str(repo)!r}), tm.__file__
pipe = tm.build_pipeline(json.loads(open({str(repo / 'edgepose' / 'pipeline.json')!r}).read()))
coords, scores = pipe.pose_estimator.decode({{"heatmaps": np.load({str(tmp_path / 'heat.npy')!r})}}, np.load({str(tmp_path / 'boxes.npy')!r}))
np.save({str(tmp_path / 'coords.npy')!r}, coords)
from edgepose.pipeline.preprocess import crop_people
crops, _ = crop_people(np.zeros((64, 48, 3), np.uint8), np.load({str(tmp_path / 'boxes.npy')!r}), pipe.pose_meta)
assert crops.shape == (2, 3, 128, 96), crops.shape
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    want, _ = heatmap_to_coords(heat, boxes)
    np.testing.assert_allclose(np.load(tmp_path / "coords.npy"), want, atol=1e-6)


def test_shipped_files_follow_lazy_imports():
    from edgepose.serving.shipping import shipped_files

    files = shipped_files()
    # pipeline.py imports decode/preprocess inside functions only; they must still be shipped
    assert {"pipeline/pipeline.py", "pipeline/decode.py", "pipeline/preprocess.py", "backends/base.py"} <= set(files)
    assert not any(f.startswith(("models/", "export/", "quant/", "backends/factory")) for f in files)


def test_repository_errors_are_clear(tmp_path, defaults):
    from edgepose.export import torch2onnx
    from edgepose.serving.repository import write_repository

    det, pose = defaults
    write_repository(det, pose, tmp_path / "repo")
    with pytest.raises(UsageError, match="--force"):
        write_repository(det, pose, tmp_path / "repo")
    with pytest.raises(UsageError, match="GPU only"):
        write_repository(det, pose, tmp_path / "other", backend="tensorrt", device="cpu")
    with pytest.raises(UsageError, match="needs an existing .onnx"):
        write_repository(tmp_path / "missing.onnx", pose, tmp_path / "other")
    static = tmp_path / "pose_b1.onnx"
    torch2onnx("default_pose", static, weights="random", batch=1)
    with pytest.raises(UsageError, match="dynamic batch"):
        write_repository(det, static, tmp_path / "other")
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".other*"))
    cfg = json.loads((tmp_path / "repo" / "edgepose" / "pipeline.json").read_text())
    assert cfg["pose_max_batch"] == 8 and cfg["det_meta"]["task"] == "ctdet"


def test_missing_binary_says_how_to_get_one(tmp_path, monkeypatch):
    from edgepose.serving.server import find_tritonserver

    monkeypatch.setenv("EDGEPOSE_TRITONSERVER", str(tmp_path / "nope"))
    with pytest.raises(DependencyError, match="NGC image.*nvidia-pytriton"):
        find_tritonserver()


def test_url_parsing():
    from edgepose.serving.client import parse_url

    assert parse_url("127.0.0.1:8000") == ("http", "127.0.0.1:8000")
    assert parse_url("grpc://gpu-box:8001") == ("grpc", "gpu-box:8001")
    for bad in ("localhost", "ftp://a:1", "a:b"):
        with pytest.raises(UsageError, match="HOST:PORT"):
            parse_url(bad)


def test_cli_export_triton(tmp_path, defaults):
    cli = [sys.executable, "-m", "edgepose", "export-triton", "--out", str(tmp_path / "repo")]
    first = subprocess.run(cli + ["--backend", "onnxruntime", "--device", "cpu"], capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert "synthetic people" in first.stdout and "edgepose serve" in first.stdout
    text = (tmp_path / "repo" / "pose" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in text and "KIND_CPU" in text
    again = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0 and "--force" in again.stderr
    forced = subprocess.run(cli + ["--force"], capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert 'backend: "python"' in (tmp_path / "repo" / "pose" / "config.pbtxt").read_text()
