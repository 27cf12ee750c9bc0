"""CornerNet-Squeeze at any frame size and through `edgepose build` (issue 14, item 2): a
dynamic-H/W export equals PyTorch at two sizes, runs on two frame sizes in the pipeline, a
fixed-size export names the fix, and FP16 / INT8 builds of it are lint clean."""
import json

import numpy as np
import onnx
import pytest
import torch

from edgepose.backends.onnxruntime import ORTRunner
from edgepose.backends.torch_runner import TorchRunner
from edgepose.errors import UsageError
from edgepose.export import torch2onnx
from edgepose.metadata import read_metadata
from edgepose.pipeline.pipeline import Pipeline

from helpers.cornernet_models import export_tiny_pose, randomised_cornernet

MAX_HW = (383, 511)  # the canvases of the 256x256 synthetic images and the test frames fit


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cornernet_dynamic")
    model = randomised_cornernet(seed=2)  # with these weights the corners pair into boxes on every test frame
    dynamic = torch2onnx(model, tmp / "det.dyn.onnx", input_size=(255, 255), plugins="off", dynamic_hw=MAX_HW)
    fixed = torch2onnx(model, tmp / "det.fixed.onnx", input_size=(127, 127), plugins="off")
    export_tiny_pose(tmp / "pose.onnx")
    return model, dynamic, fixed, tmp


def test_dynamic_export_has_free_hw_and_equals_torch_at_two_sizes(models):
    _, dynamic, _, _ = models
    sizes = {r.name.split("@")[1] for r in dynamic.errors}
    assert sizes == {"255x255", "383x511"}, sizes  # two input sizes, each checked against torch
    assert all(r.ok for r in dynamic.errors) and dynamic.tolerance == 1e-4
    graph = onnx.load(str(dynamic.path)).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, "height", "width"]
    extra = read_metadata(dynamic.path).extra
    assert extra["dynamic_hw"] and extra["min_input_size"] == [127, 127] and extra["max_input_size"] == list(MAX_HW)
    assert "dynamic 127x127 to 383x511" in dynamic.format()


def test_dynamic_export_equals_torch_at_sizes_it_was_not_verified_on(models):
    model, dynamic, _, _ = models
    runner = ORTRunner(dynamic.path)
    for h, w in ((127, 383), (383, 255)):
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h + w))
        with torch.no_grad():
            want = model(x)
        got = runner.infer({"input": x.numpy()})
        for name, ref in want.items():
            ref = ref.numpy()
            assert got[name].shape == ref.shape
            assert np.abs(got[name] - ref).max() <= 1e-4 * np.abs(ref).max(), (name, h, w)


@pytest.mark.parametrize("frame_hw", [(100, 120), (200, 300)])
def test_dynamic_cornernet_runs_on_two_frame_sizes_like_torch(models, frame_hw):
    model, dynamic, _, tmp = models
    frame = np.random.default_rng(frame_hw[0]).integers(0, 255, frame_hw + (3,), dtype=np.uint8)
    pose = ORTRunner(tmp / "pose.onnx")
    got = Pipeline(ORTRunner(dynamic.path), pose, score_threshold=0.0, max_persons=5)(frame)
    want = Pipeline(TorchRunner(model, meta=dynamic.meta), pose, score_threshold=0.0, max_persons=5)(frame)
    assert len(want) > 0, "the randomised detector should find some boxes"
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.box_scores, want.box_scores, atol=1e-5)


def test_fixed_cornernet_on_a_larger_frame_names_the_dynamic_export(models):
    _, _, fixed, tmp = models
    pipe = Pipeline(ORTRunner(fixed.path), ORTRunner(tmp / "pose.onnx"), score_threshold=0.0)
    frame = np.zeros((480, 640, 3), np.uint8)
    with pytest.raises(UsageError, match=r"fixed 127x127 input.*canvas for a 640x480 frame is 511x767.*"
                                         r"--input-size dynamic"):
        pipe(frame)


def test_decode_with_dynamic_size_is_refused(models, tmp_path):
    with pytest.raises(UsageError, match="--decode needs a fixed --input-size"):
        torch2onnx("centernet_res18", tmp_path / "d.onnx", weights="random", decode=True, dynamic_hw=True)
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_cornernet_builds_lint_clean(models, precision, tmp_path):
    from edgepose.workflows.build import BuildOptions, build

    _, dynamic, _, tmp = models
    result = build(BuildOptions(det=dynamic.path, pose=tmp / "pose.onnx", precision=precision, calib="synthetic:8",
                                calib_size=8, out_dir=tmp_path / "out", det_threshold=0.05, progress=False,
                                cache_dir=tmp / "cache", benchmark=False, min_agreement=0.0))
    report = json.loads(result.report_path.read_text())
    for role in ("det", "pose"):
        if precision == "int8":  # the Q/DQ lint and the ONNX checker (INT8 graphs only)
            onnx.checker.check_model(str(result.outputs[role]), full_check=True)
            assert report["models"][role]["lint"] == "clean", report["models"][role]["lint"]
    meta = read_metadata(result.outputs["det"])
    assert meta.task == "cornernet" and meta.extra["dynamic_hw"]
    if precision == "int8":
        assert report["calibration"]["pose_crops"] > 0  # CornerNet's detections became pose crops
        assert report["models"]["det"]["agreement"]["methods"]
    pipe = Pipeline(ORTRunner(result.outputs["det"]), ORTRunner(result.outputs["pose"]), score_threshold=0.0,
                    max_persons=5)
    for frame_hw in ((100, 120), (200, 300)):  # the frames FP32 finds people on (test above), two canvas sizes
        frame = np.random.default_rng(frame_hw[0]).integers(0, 255, frame_hw + (3,), dtype=np.uint8)
        found = pipe(frame)
        assert len(found) > 0 and found.keypoints.shape[1:] == (17, 2), (precision, frame_hw)
