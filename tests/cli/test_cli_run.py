"""`edgepose run`: bad inputs exit cleanly with one line; JSON loads in pycocotools; a stream
that stops early or Ctrl-C still writes what was processed."""
import json
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest

from helpers.media import image_folder as _image_folder, write_video as _write_video
from helpers.optional import torch_or_skip
from helpers.paths import REPO
from helpers.tiny_pipeline import export_tiny_models

CLI = [sys.executable, "-c", "from edgepose.cli import main; main()"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch_or_skip()
    folder = tmp_path_factory.mktemp("cli_models")
    paths = export_tiny_models(folder)
    proto = onnx.load(str(paths["det"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(folder / "det_bare.onnx"))
    paths["det_bare"] = folder / "det_bare.onnx"
    return paths


def _cli(*args, timeout=180):
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout)




def test_bad_camera_index_one_line_exit_2(models):
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--camera", 97)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "camera 97" in lines[0] and "Traceback" not in proc.stderr


def test_onnx_without_metadata_says_what_to_do(models, tmp_path):
    folder = _image_folder(tmp_path / "imgs", n=1)
    proc = _cli("run", "--det", models["det_bare"], "--pose", models["pose"], "--source", folder, "--no-progress")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "no edgepose metadata" in lines[0] and "--input-size/--mean/--std" in lines[0]
    assert "re-export" in lines[0].lower()
    # ... and passing them makes it run
    proc = _cli("run", "--det", models["det_bare"], "--pose", models["pose"], "--source", folder, "--no-progress",
                "--input-size", "det:64x64", "--mean", "det:0.40789654,0.44719302,0.47026115",
                "--std", "det:0.28863828,0.27408164,0.27809835", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    with_meta = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", folder,
                     "--no-progress", "--json", tmp_path / "m.json")
    assert with_meta.returncode == 0, with_meta.stderr
    a = json.loads((tmp_path / "r.json").read_text())
    b = json.loads((tmp_path / "m.json").read_text())
    assert len(a) == len(b) > 0
    np.testing.assert_allclose([r["keypoints"] for r in a], [r["keypoints"] for r in b], atol=1e-3)


def test_bad_override_and_usage_errors(models, tmp_path):
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", tmp_path,
                "--input-size", "det:64by64")
    assert proc.returncode == 2 and "HxW" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"])
    assert proc.returncode == 2 and "--camera N or --source" in proc.stderr
    proc = _cli("run", "--det", models["det"], "--source", tmp_path)
    assert proc.returncode == 2 and "--det and --pose" in proc.stderr
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", tmp_path / "nope.mp4")
    assert proc.returncode == 2 and "no such file" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_the_options():
    proc = _cli("run", "--help")
    assert proc.returncode == 0
    for opt in ("--det", "--pose", "--camera", "--source", "--show", "--save", "--json", "--backend",
                "--score-threshold", "--max-persons", "--flip", "--input-size", "--mean", "--std"):
        assert opt in proc.stdout


def _gt_file(path, image_ids, size=(128, 96)):
    """A tiny COCO keypoints ground truth: one person per image."""
    w, h = size
    kps = []
    for j in range(17):
        kps += [40 + j, 20 + 2 * j, 2]
    doc = {
        "images": [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i in image_ids],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": [30, 10, 40, 60], "area": 2400.0,
                         "iscrowd": 0, "num_keypoints": 17, "keypoints": kps} for k, i in enumerate(image_ids)],
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": ["k%d" % j for j in range(17)], "skeleton": []}],
    }
    path.write_text(json.dumps(doc))
    return path


def test_json_loads_in_pycocotools_and_video_is_written(models, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    folder = _image_folder(tmp_path / "imgs", n=3)
    out_json, out_video = tmp_path / "res.json", tmp_path / "out" / "overlay.avi"
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", folder,
                "--json", out_json, "--save", out_video)
    assert proc.returncode == 0, proc.stderr
    assert "p99" in proc.stdout and "FPS" in proc.stdout and "3 read" in proc.stdout and "0 skipped" in proc.stdout
    results = json.loads(out_json.read_text())
    assert results and {r["image_id"] for r in results} <= {1, 2, 3}
    assert all(r["category_id"] == 1 and len(r["keypoints"]) == 51 and len(r["bbox"]) == 4 for r in results)
    gt = COCO(str(_gt_file(tmp_path / "gt.json", [1, 2, 3])))
    dt = gt.loadRes(str(out_json))
    assert len(dt.getAnnIds()) == len(results)
    ev = COCOeval(gt, dt, "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert -1 <= ev.stats[0] <= 1
    # the overlay video holds one frame per image and no temp file is left behind
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert [p.name for p in out_video.parent.iterdir()] == ["overlay.avi"]


def test_video_results_load_against_the_clips_own_annotations(models, tmp_path):
    """`edgepose data clip` annotates frame i as image i + 1; `run --json` on the clip uses the same ids."""
    from pycocotools.coco import COCO

    clip = tmp_path / "clip.mp4"
    assert _cli("data", "clip", "--out", clip, "--frames", "4", "--people", "2", "--size", "128x128").returncode == 0
    out_json = tmp_path / "res.json"
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", clip, "--json", out_json,
                "--no-progress", "--score-threshold", "0")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out_json.read_text())
    gt = COCO(str(clip.with_suffix(".json")))
    assert {r["image_id"] for r in results} == set(gt.getImgIds()) == {1, 2, 3, 4}  # threshold 0: every frame
    assert len(gt.loadRes(str(out_json)).getAnnIds()) == len(results)


def test_folder_with_corrupt_image_counts_it(models, tmp_path):
    folder = _image_folder(tmp_path / "imgs", n=2)
    (folder / "3.jpg").write_bytes(b"broken")
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", folder, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "2 read, 2 processed, 1 skipped" in proc.stdout
    assert "3.jpg" in proc.stderr  # the warning names the file


def test_truncated_video_keeps_what_was_processed(models, tmp_path):
    full = _write_video(tmp_path / "full.avi", 20)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out_json, out_video = tmp_path / "res.json", tmp_path / "overlay.avi"
    proc = _cli("run", "--det", models["det"], "--pose", models["pose"], "--source", cut, "--json", out_json,
                "--save", out_video)
    assert proc.returncode == 0, proc.stderr
    assert "stopped early" in proc.stdout
    results = json.loads(out_json.read_text())
    frames = {r["image_id"] for r in results}
    read = int(proc.stdout.split(" read,")[0].split()[-1])
    assert 0 < read < 20 and frames and min(frames) >= 1 and max(frames) <= read  # frame i is image i + 1
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == read
    cap.release()


def test_ctrl_c_writes_what_was_processed(models, tmp_path):
    from edgepose.data.sources import open_source
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.pipeline.run_loop import run_source

    video = _write_video(tmp_path / "clip.avi", 10)
    pipe = Pipeline.from_files(models["det"], models["pose"], runner_kw={"threads": 1})
    seen = []

    def interrupt_after_three(frame_id, name, frame, result):
        seen.append((frame_id, len(result)))
        if frame_id == 2:
            raise KeyboardInterrupt

    out_json, out_video = tmp_path / "res.json", tmp_path / "overlay.mp4"
    summary = run_source(pipe, open_source(source=str(video)), save=out_video, json_path=out_json,
                         progress=False, on_result=interrupt_after_three)
    assert summary.interrupted and summary.frames_processed == 3 and summary.frames_read == 3
    results = json.loads(out_json.read_text())
    assert len(results) == sum(n for _, n in seen) > 0
    assert {r["image_id"] for r in results} <= {1, 2, 3}  # video frames count from 1
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert "interrupted" in summary.report()


def test_default_models_or_a_clear_error(tmp_path):
    """Without --det/--pose the built-in models run; where they are not installed the error
    says to pass --det and --pose (exit 2, one line)."""
    import os

    from edgepose.models import defaults

    folder = _image_folder(tmp_path / "imgs", n=1)
    env = {**os.environ, "EDGEPOSE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([*CLI, "run", "--source", str(folder), "--no-progress", "--json", str(tmp_path / "r.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    shipped = all((defaults.WEIGHTS_DIR / f"{n}.pth").is_file() for n in ("default_det", "default_pose"))
    if shipped:
        assert proc.returncode == 0, proc.stderr
        assert isinstance(json.loads((tmp_path / "r.json").read_text()), list)
    else:
        assert proc.returncode == 2 and "--det" in proc.stderr and "--pose" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
