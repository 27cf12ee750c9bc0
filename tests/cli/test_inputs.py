"""Bad inputs are refused with a clear one-line error instead of producing plausible garbage
(issue 10, section 4): camera index, input sizes, file permissions of written files."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgepose.cli import main
from edgepose.errors import MetadataError, UsageError
from helpers.paths import REPO


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_negative_camera_index_is_refused_before_opencv(tmp_path):
    # a subprocess: OpenCV segfaulted on camera -1 before the fix
    proc = subprocess.run([sys.executable, "-m", "edgepose", "run", "--camera", "-1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "-1" in proc.stderr and ">=0" in proc.stderr.replace(" ", "")
    from edgepose.data.sources import open_source

    with pytest.raises(UsageError, match=">= 0"):
        open_source(camera=-3)


@pytest.mark.parametrize("size", ["0x0", "pose:0x0", "det:-64x64", "pose:100000x100000", "8x8", "abc"])
def test_run_input_size_out_of_range_exits_2_with_the_range(tmp_path, size):
    res = _invoke("run", "--det", tmp_path / "d.onnx", "--pose", tmp_path / "p.onnx", "--source", tmp_path,
                  "--input-size", size)
    assert res.exit_code == 2, res.output
    assert "from 16 to 4096" in res.output and repr(size) in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("export", "default_det", "--weights", "random", "--out", "{tmp}/d.onnx", "--input-size", "0x0"),
    ("export", "default_det", "--weights", "random", "--out", "{tmp}/d.onnx", "--input-size", "99999"),
    ("train", "det", "--data", "{tmp}", "--out", "{tmp}/x.pth", "--input-size", "0"),
    ("train", "pose", "--data", "{tmp}", "--out", "{tmp}/x.pth", "--input-size", "-256x192"),
    ("data", "synth", "--out", "{tmp}/s", "--size", "0x0"),
    ("data", "clip", "--out", "{tmp}/c.mp4", "--size", "100000x100000"),
])
def test_every_size_option_refuses_zero_negative_and_huge(tmp_path, args):
    res = _invoke(*[a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert "to 4096" in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_one_hxw_parser():
    from edgepose.cli._options import parse_hw

    assert parse_hw("512x384") == (512, 384)
    assert parse_hw("256") == (256, 256)
    assert parse_hw("32,24") == (32, 24)
    for bad in ("0x0", "16x0", "4097x16", "1x2x3", "", "x"):
        with pytest.raises(UsageError, match="from 16 to 4096"):
            parse_hw(bad)


def test_metadata_refuses_non_positive_input_size():
    from edgepose.metadata import ModelMeta

    with pytest.raises(MetadataError, match="> 0"):
        ModelMeta(model="m", task="sppe", input_size=(0, 0))


def test_atomic_writes_keep_the_umask(tmp_path):
    from edgepose.io_utils import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("{}")
        os.umask(0o027)
        with atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------- folders, corrupt and empty files
def _png(path, seed=0, h=48, w=64):
    import cv2
    import numpy as np

    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _truncated_jpeg(path, h=96, w=128):
    """A real JPEG cut in half: OpenCV decodes it as a half-grey image without an error."""
    import cv2
    import numpy as np

    img = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    data = buf.tobytes()
    path.write_bytes(data[: len(data) // 2])
    assert cv2.imread(str(path)) is not None  # the trap: it still "reads"
    return path


def test_folder_image_ids_are_unique_per_file(tmp_path):
    from edgepose.data.sources import open_source

    for name in ("x.jpg", "000002.jpg", "2.png", "b.png", "10.png"):
        _png(tmp_path / name)
    src = open_source(source=str(tmp_path))
    ids = src.image_ids
    assert len(set(ids.values())) == 5  # x.jpg and 000002.jpg both got 2 before
    assert ids["000002.jpg"] == 2 and ids["10.png"] == 10
    # sorted order: "2.png" repeats number 2 -> 11, then "b.png" -> 12, "x.jpg" -> 13
    assert (ids["2.png"], ids["b.png"], ids["x.jpg"]) == (11, 12, 13)


def test_run_help_says_how_folder_ids_are_made():
    res = _invoke("run", "--help")
    assert "numeric file stem keeps its number" in " ".join(res.output.split())


def test_truncated_jpeg_is_skipped_and_counted_in_a_folder(tmp_path, caplog):
    import logging

    from edgepose.data.sources import open_source

    _png(tmp_path / "1.png")
    _truncated_jpeg(tmp_path / "2.jpg")
    (tmp_path / "3.png").write_bytes(_png(tmp_path / "x.png").read_bytes()[:-12])  # PNG without IEND
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        src = open_source(source=str(tmp_path))
        names = [name for _, _, name in src]
    assert names == ["1.png", "x.png"] and src.skipped == 2
    text = caplog.text
    assert "2.jpg" in text and "truncated JPEG" in text and "truncated PNG" in text
    assert "skipped 2 of 4 images" in text


def test_truncated_single_image_is_an_error(tmp_path):
    from edgepose.data.sources import open_source
    from edgepose.errors import SourceError

    with pytest.raises(SourceError, match="truncated JPEG"):
        open_source(source=str(_truncated_jpeg(tmp_path / "cut.jpg")))


def test_zero_frame_video_is_an_error(tmp_path):
    import cv2

    from edgepose.data.sources import open_source
    from edgepose.errors import SourceError

    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    writer.release()
    assert cv2.VideoCapture(str(path)).isOpened()  # OpenCV opens it; it just has nothing in it
    with pytest.raises(SourceError, match="no readable frames"):
        open_source(source=str(path))
    res = _invoke("run", "--source", path)
    assert res.exit_code == 2 and "0 frames" in res.output


def test_calibration_skips_truncated_images_and_warns_when_far_short(tmp_path, caplog):
    import logging

    from edgepose.workflows.calibration_feeds import load_calibration_images

    for i in range(3):
        _png(tmp_path / f"{i}.png", seed=i)
    _truncated_jpeg(tmp_path / "9.jpg")
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        images = load_calibration_images(tmp_path, size=64, progress=False)
    assert len(images) == 3 and len(images.skipped) == 1 and "truncated JPEG" in images.skipped[0]
    assert "only 3 usable images of the 64 asked for" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgepose"):
        load_calibration_images(tmp_path, size=4, progress=False)
    assert "usable images" not in caplog.text  # 3 of 4 is not "far fewer"


def test_eval_refuses_a_truncated_image(tmp_path):
    import json

    from edgepose.errors import SourceError
    from edgepose.eval.dataset_eval import evaluate_pipeline
    from edgepose.pipeline.pipeline import PoseResult

    _truncated_jpeg(tmp_path / "1.jpg")
    doc = {"images": [{"id": 1, "file_name": "1.jpg", "width": 128, "height": 96}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 60], "area": 2400.0,
                            "iscrowd": 0, "num_keypoints": 17, "keypoints": [20, 20, 2] * 17}],
           "categories": [{"id": 1, "name": "person", "keypoints": [f"k{j}" for j in range(17)], "skeleton": []}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    with pytest.raises(SourceError, match="truncated JPEG"):
        evaluate_pipeline(lambda frame: PoseResult.empty(), tmp_path / "ann.json", tmp_path, progress=False)
