"""Bad inputs are refused with a clear one-line error instead of producing plausible garbage
(issue 10, section 4): camera index, input sizes, file permissions of written files."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgepose.cli import main
from edgepose.errors import MetadataError, UsageError

REPO = Path(__file__).resolve().parents[1]


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
