"""Models whose outputs do not fit their role are refused at load, and people removed by
the caps (max_persons, decoder K) are reported (issue 10, section 4)."""
import logging

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgepose.errors import MetadataError
from helpers.optional import torch_or_skip
from helpers.tiny_pipeline import export_tiny_models, make_frame


def _conv_onnx(path, outputs, in_channels=3, hw=(32, 24), batch="n"):
    """An unrelated model: one 3x3 conv per output ``{name: channels}``, no edgepose metadata."""
    rng = np.random.default_rng(0)
    nodes, inits, outs = [], [], []
    for name, channels in outputs.items():
        weight = numpy_helper.from_array(rng.normal(size=(channels, in_channels, 3, 3)).astype(np.float32),
                                         f"w_{name}")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", ["input", weight.name], [name], pads=[1, 1, 1, 1]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, channels, *hw]))
    graph = helper.make_graph(nodes, "unrelated", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [batch, in_channels, *hw])], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch_or_skip()
    return export_tiny_models(tmp_path_factory.mktemp("check_models"))


def _folder(tmp_path, n_rect=3):
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), make_frame(1, n_rect=n_rect))
    return folder


def _run(*args):
    from edgepose.cli import main

    return CliRunner().invoke(main, ["run", *map(str, args), "--no-progress"])


def test_unrelated_onnx_as_pose_is_refused(models, tmp_path):
    bogus = _conv_onnx(tmp_path / "bogus.onnx", {"out": 3})
    res = _run("--det", models["det"], "--pose", bogus, "--input-size", "pose:32x24", "--source", _folder(tmp_path),
               "--json", tmp_path / "r.json")
    # before: exit 0 and 3-joint "keypoints" in r.json
    assert res.exit_code == 1, res.output
    assert "not a 17-joint pose model" in res.output and "'out' has shape ?x3x32x24" in res.output
    assert "17 joints (COCO)" in res.output
    assert not (tmp_path / "r.json").exists()


def test_pose_with_wrong_joint_count_in_graph_decode_is_refused(models):
    from edgepose.backends.factory import load_runner
    from edgepose.pipeline.pipeline import Pipeline

    det = load_runner(models["det"])
    pose = load_runner(models["pose"])
    pose.meta = pose.meta.replace(keypoint_names=("a", "b", "c"), flip_pairs=())
    with pytest.raises(MetadataError, match="not a 3-joint pose model"):
        Pipeline(det, pose)
    argmax = load_runner(models["pose_argmax"])
    argmax.meta = argmax.meta.replace(keypoint_names=tuple("abcde"), flip_pairs=())
    shape = {o.name: o.shape for o in argmax.outputs}["coords"]
    if isinstance(shape[1], int):  # static joint axis: refused at load
        with pytest.raises(MetadataError, match="not Nx5x2"):
            Pipeline(det, argmax)
    else:  # dynamic joint axis: refused on the first decoded person
        pipe = Pipeline(det, argmax)
        with pytest.raises(MetadataError, match="produced 17 keypoints per person, but its metadata says 5"):
            pipe(make_frame(0))


def test_detector_with_wrong_outputs_is_refused(models, tmp_path):
    from edgepose.backends.factory import load_runner
    from edgepose.pipeline.pipeline import Pipeline

    wrong_wh = _conv_onnx(tmp_path / "det.onnx", {"hm": 1, "wh": 3}, hw=(64, 64), batch=1)
    res = _run("--det", wrong_wh, "--pose", models["pose"], "--input-size", "det:64x64", "--source",
               _folder(tmp_path))
    assert res.exit_code == 1, res.output
    assert "'wh' has shape 1x3x64x64, want Nx2xHxW" in res.output
    gray = _conv_onnx(tmp_path / "gray.onnx", {"hm": 1, "wh": 2}, in_channels=1, hw=(64, 64), batch=1)
    with pytest.raises(MetadataError, match="not an NCHW colour image"):
        Pipeline(load_runner(gray, meta_overrides={"input_size": (64, 64)}), load_runner(models["pose"]))


def test_max_persons_drops_are_reported_with_counts(models, tmp_path, caplog):
    from edgepose.data.sources import open_source
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.pipeline.run_loop import run_source

    folder = _folder(tmp_path, n_rect=10)
    frame = make_frame(1, n_rect=10)
    everyone = len(Pipeline.from_files(models["det"], models["pose"], max_persons=1000)(frame))
    assert everyone > 3  # the crowd is found, so the cap has something to drop
    pipe = Pipeline.from_files(models["det"], models["pose"], max_persons=2)
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        summary = run_source(pipe, open_source(source=str(folder)), progress=False)
    assert summary.persons == 2
    warnings = [r.getMessage() for r in caplog.records if "max-persons" in r.getMessage()]
    assert len(warnings) == 1  # once per run
    assert f"--max-persons 2 dropped {everyone - 2} people" in warnings[0]


def test_decoder_k_saturation_is_reported(models, caplog):
    from edgepose.pipeline.pipeline import Pipeline

    from edgepose.pipeline.caps import warn_caps

    normal = Pipeline.from_files(models["det"], models["pose"], max_persons=1000)
    normal(make_frame(2))
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        warn_caps(normal)
    assert caplog.text == ""  # candidates below the threshold remain: K cut nobody
    pipe = Pipeline.from_files(models["det"], models["pose"], score_threshold=0.0, max_persons=1000)
    pipe(make_frame(2))  # all K=100 candidates pass a zero threshold

    with caplog.at_level(logging.WARNING, logger="edgepose"):
        warn_caps(pipe)
    assert "all 100 candidates of the detector's decoder (K)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        warn_caps(pipe)  # reported once, then reset
    assert caplog.text == ""


# ---------------------------------------------------------------- messages that name the real cause
def _readonly_dir(tmp_path):
    """A folder this process cannot write to (root ignores permission bits: use /sys)."""
    import os
    from pathlib import Path

    if os.geteuid() == 0:
        folder = Path("/sys")
        try:
            (folder / ".edgepose_probe").touch()
        except OSError:
            return folder
        (folder / ".edgepose_probe").unlink()
        pytest.skip("no read-only folder on this machine")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_readonly_save_says_permission_not_codec(models, tmp_path):
    out = _readonly_dir(tmp_path) / "o.mp4"
    res = _run("--det", models["det"], "--pose", models["pose"], "--source", _folder(tmp_path), "--save", out)
    assert res.exit_code == 2, res.output
    assert "Permission denied" in res.output and "encoder" not in res.output


def test_data_clip_into_readonly_folder_does_not_blame_opencv(tmp_path):
    from edgepose.cli import main

    out = _readonly_dir(tmp_path) / "c.mp4"
    res = CliRunner().invoke(main, ["data", "clip", "--out", str(out), "--frames", "2", "--size", "64x64"])
    assert res.exit_code == 2, res.output
    assert "Permission denied" in res.output and "install" not in res.output


def test_build_errors_name_build_options(tmp_path):
    from edgepose.errors import UsageError
    from edgepose.workflows.build import BuildOptions, build

    det = _conv_onnx(tmp_path / "det.onnx", {"hm": 1, "wh": 2}, hw=(64, 64), batch=1)
    pose = _conv_onnx(tmp_path / "pose.onnx", {"heatmaps": 17})
    with pytest.raises(MetadataError) as info:
        build(BuildOptions(det=det, pose=pose, precision="fp16", out_dir=tmp_path / "b", progress=False))
    assert "`edgepose build` needs" in str(info.value) and "--input-size" not in str(info.value)
    with pytest.raises(UsageError, match="--det-threshold must be in"):
        build(BuildOptions(det=det, pose=pose, precision="int8", out_dir=tmp_path / "b", det_threshold=2.0,
                           progress=False))
    from edgepose.cli import main

    res = CliRunner().invoke(main, ["build", "--int8", "--det-threshold", "-1", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "--det-threshold" in res.output and "score_threshold" not in res.output
