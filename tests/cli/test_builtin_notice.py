"""The built-in default models say what they are: one stderr line whenever `run`, `eval` or
`build` fall back to them (none when --det/--pose are given), and the same up front in --help."""
import re

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgepose.cli import main
from helpers.optional import torch_or_skip

NOTICE_START = "edgepose: note: using the built-in default"
# the facts the notice and --help must carry (whitespace-normalised, so wrapping does not matter)
FACTS = ("trained on synthetic people", "show the pipeline working", "will not find real people reliably",
         "edgepose export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx")


def _flat(text):
    return re.sub(r"\s+", " ", text)


def _notices(stderr):
    return [line for line in stderr.splitlines() if line.startswith(NOTICE_START)]


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    """The default models exported into a private cache (EDGEPOSE_CACHE for the commands)."""
    from edgepose.models import defaults as D

    if not all((D.WEIGHTS_DIR / f"{n}.pth").is_file() for n in ("default_det", "default_pose")):
        pytest.fail("the built-in default weights are missing from edgepose/models/weights/")
    torch_or_skip()
    cache = tmp_path_factory.mktemp("default_cache")
    det, pose = D.default_model_paths(cache)
    return cache, det, pose


@pytest.fixture
def cli(defaults, monkeypatch):
    monkeypatch.setenv("EDGEPOSE_CACHE", str(defaults[0]))

    def invoke(*args):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    from edgepose.data.synthetic import generate_dataset

    folder = tmp_path_factory.mktemp("notice_val")
    ann = generate_dataset(folder, 2, seed=5, image_size=(128, 128), max_people=2, progress=False)
    return ann, folder / "images"


@pytest.mark.parametrize("command", [[], ["run"], ["eval"], ["build"]])
def test_help_says_what_the_defaults_are_up_front(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    intro = _flat(result.output.split("Options:")[0])
    if command == ["run"]:
        intro = intro.split("Examples:")[0]
    for fact in FACTS[:3]:
        assert fact in intro, (command, fact)
    assert "ctdet_coco_resdcn18.pth" in intro and "--det" in intro


def test_run_on_the_defaults_prints_one_notice(cli, defaults, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), np.full((96, 128, 3), 127, np.uint8))
    result = cli("run", "--source", folder, "--no-progress")
    notices = _notices(result.stderr)
    assert len(notices) == 1, result.stderr
    assert "detector and pose model" in notices[0]
    for fact in FACTS:
        assert fact in notices[0]
    _, det, pose = defaults
    result = cli("run", "--det", det, "--pose", pose, "--source", folder, "--no-progress")
    assert _notices(result.stderr) == [] and "synthetic" not in result.stderr


def test_eval_notice_names_the_model_that_fell_back(cli, defaults, val):
    _, det, pose = defaults
    ann, images = val
    for args, which in (([], "detector and pose model"), (["--det", det], "pose model"),
                        (["--pose", pose], "detector")):
        result = cli("eval", "--ann", ann, "--images", images, "--no-progress", *args)
        notices = _notices(result.stderr)
        assert len(notices) == 1 and f"default {which}." in notices[0], (args, result.stderr)
    result = cli("eval", "--ann", ann, "--images", images, "--no-progress", "--det", det, "--pose", pose)
    assert _notices(result.stderr) == []


def test_build_on_the_defaults_prints_one_notice(cli, defaults, tmp_path):
    _, det, pose = defaults
    result = cli("build", "--fp16", "--out", tmp_path / "a", "--quiet")
    notices = _notices(result.stderr)
    assert len(notices) == 1 and "detector and pose model" in notices[0], result.stderr
    assert (tmp_path / "a" / "det.fp16.onnx").is_file()
    result = cli("build", "--fp16", "--det", det, "--pose", pose, "--out", tmp_path / "b", "--quiet")
    assert _notices(result.stderr) == []
