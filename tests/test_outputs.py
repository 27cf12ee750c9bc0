"""Outputs are never reported written when broken, and finished work is never lost (issue 10 §3).

Faults are real where the machine allows: a full disk is a tiny tmpfs filled to the last byte
(as root, e.g. CI containers), else a file-size limit on the process (RLIMIT_FSIZE); a
read-only folder is a tmpfs mounted read-only (root ignores chmod), else a chmod 555 folder;
Ctrl-C is SIGINT sent to the running process.
"""
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from helpers.media import image_folder as _image_folder, write_video as _write_video
from helpers.optional import torch_or_skip
from helpers.paths import REPO

CLI = [sys.executable, "-c", "from edgepose.cli import main; main()"]


# ---------------------------------------------------------------------------- fault helpers
def _mount(path, options) -> bool:
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


def _umount(path):
    subprocess.run(["umount", str(path)], capture_output=True)


def _fill(folder):
    with open(folder / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 1024)
        except OSError:
            pass


FSIZE_LIMIT = 32 * 1024  # bytes per file where no tmpfs can be mounted; every output tested here is larger


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@pytest.fixture
def full_disk(tmp_path):
    """(folder, preexec_fn): the folder's file system has no free byte.  EDGEPOSE_TEST_FSIZE=1
    forces the file-size-limit variant (what a machine without mount gets)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if not os.environ.get("EDGEPOSE_TEST_FSIZE") and _mount(folder, "size=64k"):
        try:
            _fill(folder)
            yield folder, None
        finally:
            _umount(folder)
    else:
        yield folder, _limit_file_size


@pytest.fixture
def readonly_dir(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if not _mount(folder, "ro,size=64k"):
            pytest.skip("root without mount permission cannot make a read-only folder here")
        try:
            yield folder
        finally:
            _umount(folder)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def _cli(*args, preexec=None, env=None, timeout=240):
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec, env={**os.environ, **(env or {})})


def _error_line(proc) -> str:
    """The single `edgepose: error:` line (progress bars aside); fails on tracebacks."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.replace("\r", "\n").splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("edgepose: error: "), proc.stderr
    return errors[0]


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _tree(folder) -> dict:
    return {p.relative_to(folder).as_posix(): _sha(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch_or_skip()
    from helpers.tiny_pipeline import export_tiny_models

    return export_tiny_models(tmp_path_factory.mktemp("out_models"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from helpers.quant_models import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("out_tiny_build"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from edgepose.data.synthetic import generate_dataset

    ann = generate_dataset(tmp_path_factory.mktemp("out_synth"), 2, seed=3, image_size=(64, 64), progress=False)
    return Path(ann), Path(ann).parent / "images"


# ---------------------------------------------------------------------------- run --save / --json
def test_save_on_a_full_disk_fails_and_leaves_no_video(models, tmp_path, full_disk):
    folder, preexec = full_disk
    clip = _write_video(tmp_path / "clip.avi", 40)
    before = {p.name for p in folder.iterdir()}
    out_json = tmp_path / "res.json"
    json_arg = () if preexec else ("--json", out_json)  # a file-size limit would cut the JSON too
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", clip, "--save",
                folder / "o.avi", *json_arg, "--no-progress", preexec=preexec)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = _error_line(proc)
    assert "cannot write video" in line and str(folder / "o.avi") in line
    assert "video:" not in proc.stdout
    assert {p.name for p in folder.iterdir()} == before  # no broken o.avi, no .partial
    if json_arg:  # the JSON on a healthy disk is still written whole
        assert isinstance(json.loads(out_json.read_text()), list)


def test_json_on_a_full_disk_is_kept_in_a_named_file(models, tmp_path, full_disk):
    folder, preexec = full_disk
    if preexec is not None:
        pytest.skip("needs a full tmpfs beside a healthy temp folder (root with mount)")
    images = _image_folder(tmp_path / "imgs", n=3)
    spare = tmp_path / "spare"
    spare.mkdir()
    ok = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", images, "--json",
              tmp_path / "ok.json", "--no-progress")
    assert ok.returncode == 0, ok.stderr
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", images, "--json",
                folder / "r.json", "--no-progress", preexec=preexec, env={"TMPDIR": str(spare)})
    assert proc.returncode == 1
    line = _error_line(proc)
    assert str(folder / "r.json") in line and ("No space" in line or "too large" in line)
    assert not (folder / "r.json").exists() and not any(p.name.startswith(".r.json") for p in folder.iterdir())
    kept = list(spare.glob("edgepose-r-*.json"))  # the fallback folder is on another (healthy) disk
    assert len(kept) == 1 and str(kept[0]) in line
    assert json.loads(kept[0].read_text()) == json.loads((tmp_path / "ok.json").read_text())


def test_eval_results_on_a_full_disk_are_kept(models, dataset, tmp_path, full_disk):
    folder, preexec = full_disk
    if preexec is not None:
        pytest.skip("needs a full tmpfs beside a healthy temp folder (root with mount)")
    ann, images = dataset
    spare = tmp_path / "spare"
    spare.mkdir()
    proc = _cli("eval", "--ann", ann, "--images", images, "--det", models["det"], "--pose", models["pose"],
                "--json", folder / "m.json", "--results", folder / "r.json", "--no-progress",
                env={"TMPDIR": str(spare)})
    assert proc.returncode == 1
    line = _error_line(proc)
    assert str(folder / "m.json") in line and str(folder / "r.json") in line
    metrics = json.loads(next(spare.glob("edgepose-m-*.json")).read_text())
    assert "bbox_AP" in metrics and "keypoints_AP" in metrics
    assert isinstance(json.loads(next(spare.glob("edgepose-r-*.json")).read_text()), list)


# ---------------------------------------------------------------------------- read-only / full per command
def _commands(models, tiny, dataset, tmp_path, out):
    ann, images = dataset
    clip = _image_folder(tmp_path / "imgs", n=1)
    return {
        "run --json": (["run", "--det", models["det"], "--pose", models["pose"], "--source", clip, "--json",
                        out / "r.json", "--no-progress"], out / "r.json"),
        "eval --json": (["eval", "--ann", ann, "--images", images, "--det", models["det"], "--pose", models["pose"],
                         "--json", out / "m.json", "--no-progress"], out / "m.json"),
        "export": (["export", "centernet_res18", "--weights", "random", "--out", out / "d.onnx", "--input-size",
                    "64x64", "--no-simplify"], out / "d.onnx"),
        "build": (["build", "--fp16", "--det", tiny[0], "--pose", tiny[1], "--out", out / "b", "--quiet"],
                  out / "b"),
        "train": (["train", "pose", "--data", ann.parent, "--out", out / "p.pth", "--epochs", "1", "--batch-size",
                   "2", "--no-progress"], out / "p.pth"),
        "data synth": (["data", "synth", "--out", out / "s", "--images", "40", "--size", "64x64"], out / "s"),
    }


COMMANDS = ["run --json", "eval --json", "export", "build", "train", "data synth"]


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_output_is_refused_before_any_work(command, models, tiny, dataset, tmp_path, readonly_dir):
    args, target = _commands(models, tiny, dataset, tmp_path, readonly_dir)[command]
    proc = _cli(*args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = _error_line(proc)
    assert str(target) in line and ("read-only" in line or "Permission denied" in line)
    assert "nothing was processed" in line
    assert not list(readonly_dir.iterdir())


@pytest.mark.parametrize("command", ["export", "build", "train", "data synth"])
def test_full_disk_is_one_line_naming_the_path(command, models, tiny, dataset, tmp_path, full_disk):
    folder, preexec = full_disk
    if preexec is not None and command == "export":
        pytest.skip("a file-size limit also stops torch.onnx.export's temporary file; needs a full tmpfs")
    args, target = _commands(models, tiny, dataset, tmp_path, folder)[command]
    before = {p.name for p in folder.iterdir()}
    proc = _cli(*args, preexec=preexec)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = _error_line(proc)
    assert str(target) in line and ("No space" in line or "too large" in line), line
    assert {p.name for p in folder.iterdir()} == before  # no broken file, no hidden stage (a dataset's images too)


# ---------------------------------------------------------------------------- build as a set
def _build(args):
    from click.testing import CliRunner

    from edgepose.cli import main

    return CliRunner().invoke(main, ["build", *map(str, args)])


@pytest.fixture
def old_set(tiny, tmp_path):
    out = tmp_path / "set"
    res = _build(["--fp16", "--det", tiny[0], "--pose", tiny[1], "--out", out, "--quiet"])
    assert res.exit_code == 0, res.output
    (out / "det.fp16.engine").write_bytes(b"engine of the previous set")
    return out, _tree(out)


def _other_models(tiny, tmp_path):
    """Same architecture, other weights: a build from them writes different bytes."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    paths = []
    for src in tiny:
        model = onnx.load(str(src))
        for init in model.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size > 1:
                init.CopyFrom(numpy_helper.from_array((arr * 1.01).astype(np.float32), init.name))
        path = tmp_path / Path(src).name
        onnx.save(model, str(path))
        paths.append(path)
    return paths


def test_build_interrupted_between_files_leaves_the_old_set(tiny, tmp_path, old_set, monkeypatch):
    from edgepose.quant import fp16

    out, before = old_set
    det, pose = _other_models(tiny, tmp_path)
    real = fp16.convert_fp16

    def ctrl_c_at_the_pose_model(path, out_path, *a, **k):
        if "pose" in Path(out_path).name:
            raise KeyboardInterrupt
        return real(path, out_path, *a, **k)

    monkeypatch.setattr(fp16, "convert_fp16", ctrl_c_at_the_pose_model)
    res = _build(["--fp16", "--det", det, "--pose", pose, "--out", out, "--quiet"])
    assert res.exit_code == 130 and "edgepose: interrupted (Ctrl-C)" in res.output  # the shell's code for SIGINT
    assert _tree(out) == before  # not a new det beside the old pose
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []
    res = _build(["--fp16", "--det", det, "--pose", pose, "--out", tmp_path / "fresh", "--quiet"])
    assert not (tmp_path / "fresh").exists()


def test_engine_build_failure_is_an_error_and_keeps_the_old_set(tiny, tmp_path, old_set, monkeypatch):
    from edgepose.errors import EngineError
    from edgepose.workflows import build_checks

    out, before = old_set
    det, pose = _other_models(tiny, tmp_path)
    trt_error = "TensorRT could not build det.fp16.engine from det.fp16.onnx (Error Code 4: Internal Error)"

    def fails(onnx_path, engine_path=None, **options):
        raise EngineError(trt_error)

    # TensorRT "present" whose builder fails as TensorRT does; the code under test is build's handling
    monkeypatch.setattr(build_checks, "_tensorrt_api", lambda: (lambda: (True, "TensorRT 10.3 on a test GPU"), fails))
    res = _build(["--fp16", "--det", det, "--pose", pose, "--out", out, "--quiet"])
    assert res.exit_code == 1, res.output
    assert trt_error in res.output and "no TensorRT engine built" not in res.output
    assert _tree(out) == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_build_without_tensorrt_replaces_the_set_and_drops_its_stale_engine(tiny, tmp_path, old_set):
    out, before = old_set
    det, pose = _other_models(tiny, tmp_path)
    (out / "notes.txt").write_text("the user's own file")
    out.chmod(0o750)
    res = _build(["--fp16", "--det", det, "--pose", pose, "--out", out, "--quiet"])
    assert res.exit_code == 0, res.output
    assert out.stat().st_mode & 0o777 == 0o750  # the swapped-in folder keeps the folder's mode
    assert "no TensorRT engine built:" in res.output  # TensorRT is absent here: a note, exit 0
    after = _tree(out)
    assert sorted(after) == ["det.fp16.onnx", "notes.txt", "pose.fp16.onnx", "report.json"]
    assert after["det.fp16.onnx"] != before["det.fp16.onnx"] and after["pose.fp16.onnx"] != before["pose.fp16.onnx"]
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"]["det"]["path"] == str(det) and report["outputs"]["det"] == str(out / "det.fp16.onnx")
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------- Ctrl-C
def test_deferred_sigint_holds_ctrl_c_until_the_block_ends():
    from edgepose.outputs import deferred_sigint

    finished = False
    with deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        finished = True
    assert finished
    with pytest.raises(KeyboardInterrupt):  # afterwards Ctrl-C works again
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)


def test_ctrl_c_in_run_writes_valid_outputs_then_exits_130(models, tmp_path):
    clip = _write_video(tmp_path / "clip.avi", 400)
    out_json, out_video = tmp_path / "res.json", tmp_path / "overlay.avi"
    proc = subprocess.Popen([*CLI, "run", "--det", str(models["det"]), "--pose", str(models["pose"]), "--source",
                             str(clip), "--json", str(out_json), "--save", str(out_video), "--no-progress",
                             "--threads", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even if we ignore it
    partial = tmp_path / ".overlay.partial.avi"
    deadline = time.time() + 120
    while not (partial.exists() and partial.stat().st_size > 20000) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C, while the outputs are written
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    processed = int(stdout.split(" processed")[0].split()[-1])
    assert 0 < processed < 400 and "interrupted" in stdout
    results = json.loads(out_json.read_text())
    assert results and 1 <= min(r["image_id"] for r in results) and max(r["image_id"] for r in results) <= processed
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == processed
    cap.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "overlay.avi", "res.json"]


def test_ctrl_c_in_data_synth_leaves_no_half_dataset_and_exits_130(tmp_path):
    out = tmp_path / "synth"
    proc = subprocess.Popen([*CLI, "data", "synth", "--out", str(out), "--images", "100000", "--size", "64x64"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(len(list(s.glob("images/*.jpg"))) >= 5 for s in tmp_path.glob(".*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "edgepose: interrupted (Ctrl-C)" and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # neither the set nor its hidden stage


# ---------------------------------------------------------------------------- refused before any work
def test_output_equal_to_an_input_is_refused(models, dataset, tmp_path):
    ann, images = dataset
    clip = _write_video(tmp_path / "clip.avi", 3)
    digest = _sha(clip)
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", clip, "--save", clip)
    assert proc.returncode == 2 and "--save" in _error_line(proc) and "--source" in proc.stderr
    assert _sha(clip) == digest
    ann_digest = _sha(ann)
    for option in ("--results", "--json"):
        proc = _cli("eval", "--ann", ann, "--images", images, "--det", models["det"], "--pose", models["pose"],
                    option, ann)
        assert proc.returncode == 2 and option in _error_line(proc) and "--ann" in proc.stderr
        assert _sha(ann) == ann_digest


def test_build_options_are_checked_before_anything_is_written(tiny, tmp_path):
    det, pose = tiny
    out = tmp_path / "new" / "set"
    for extra, message in ((["--int8", "--max-ap-drop", "-1"], "--max-ap-drop"),
                           (["--int8", "--calib-size", "0"], "--calib-size"),
                           (["--int8", "--calib", tmp_path / "nowhere"], "does not exist"),
                           (["--fp16", "--det-threshold", "2"], "--det-threshold")):
        res = _build([*extra, "--det", det, "--pose", pose, "--out", out, "--quiet"])
        assert res.exit_code == 2 and message in res.output, res.output
        assert not (tmp_path / "new").exists()
    res = _build(["--fp16", "--det", pose, "--pose", pose, "--out", out, "--quiet"])  # a pose model as --det
    assert res.exit_code == 2 and "CenterNet" in res.output
    assert not (tmp_path / "new").exists()
