"""`edgepose export --input-size dynamic[:HxW]` and `run --det-mode keep_res` from the command
line (issue 14, item 2): a dynamic CenterNet runs on frames of two sizes, a bad bound is a
one-line usage error."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgepose.cli import main
from edgepose.export import torch2onnx
from edgepose.metadata import ModelMeta, read_metadata
from edgepose.models.alphapose import simplepose


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export_dynamic")
    res = CliRunner().invoke(main, ["export", "centernet_res18", "--weights", "random", "--out", str(tmp / "det.onnx"),
                                    "--input-size", "dynamic:128x160"])
    assert res.exit_code == 0, res.output
    pose = simplepose(num_layers=18, num_joints=17, deconv_filters=(16, 16, 16), widths=(8, 16, 16, 32)).eval()
    pose_meta = ModelMeta(model="tiny_pose", task="sppe", input_size=(64, 32), channel_order="RGB",
                          mean=(0.406, 0.457, 0.480), keypoint_names=[str(i) for i in range(17)])
    torch2onnx(pose, tmp / "pose.onnx", batch="dynamic", meta=pose_meta)
    return tmp, res.output


def test_export_dynamic_writes_bounds_and_checks_two_sizes(exported):
    tmp, output = exported
    assert "input dynamic 32x32 to 128x160 (opt 128x160)" in output
    assert "hm@128x160" in output and "hm@96x96" in output
    extra = read_metadata(tmp / "det.onnx").extra
    assert extra["min_input_size"] == [32, 32] and extra["max_input_size"] == [128, 160]


def test_run_keep_res_on_two_frame_sizes(exported, tmp_path):
    tmp, _ = exported
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for name, hw in (("1.jpg", (60, 90)), ("2.jpg", (100, 70))):
        cv2.imwrite(str(frames / name), rng.integers(0, 255, hw + (3,), dtype=np.uint8))
    out = tmp_path / "kp.json"
    res = CliRunner().invoke(main, ["run", "--det", str(tmp / "det.onnx"), "--pose", str(tmp / "pose.onnx"),
                                    "--source", str(frames), "--det-mode", "keep_res", "--score-threshold", "0",
                                    "--json", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert {r["image_id"] for r in json.loads(out.read_text())} <= {1, 2}


@pytest.mark.parametrize("value, says", [("dynamic:8x8", "each side an integer from 16"),
                                         ("dynamic:16x16", "below the smallest ctdet input 32x32")])
def test_bad_dynamic_bound_is_a_usage_error(value, says, tmp_path):
    res = CliRunner().invoke(main, ["export", "centernet_res18", "--weights", "random", "--out",
                                    str(tmp_path / "d.onnx"), "--input-size", value])
    assert res.exit_code == 2 and says in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "d.onnx").exists()
