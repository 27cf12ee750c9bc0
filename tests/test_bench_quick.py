"""benchmarks/bench.py --quick on CI-sized inputs: it runs and writes JSON / Markdown / PNG
with the expected content (no timing assertions)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.optional import torch_or_skip
from helpers.paths import REPO


pytest.importorskip("pycocotools")
pytest.importorskip("matplotlib")


def _models(tmp_path):
    """The shipped default models when their weights exist, else randomly initialised
    default architectures exported here (the benchmark's plumbing is what is tested)."""
    try:
        from edgepose.models.defaults import default_weights

        default_weights("default_det"), default_weights("default_pose")
        return [], []
    except Exception:  # noqa: BLE001 - no shipped weights yet
        torch_or_skip()
        from edgepose.export import torch2onnx

        det, pose = tmp_path / "det.onnx", tmp_path / "pose.onnx"
        torch2onnx("default_det", det, weights="random", batch=1)
        torch2onnx("default_pose", pose, weights="random", batch="dynamic")
        return ["--det", str(det), "--pose", str(pose)], \
            ["--torch-det", "default_det", "--torch-pose", "default_pose"]


@pytest.mark.slow
def test_bench_quick_writes_reports(tmp_path):
    model_args, torch_args = _models(tmp_path)
    out = tmp_path / "bench"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench.py"), "--quick", "--val-images", "6", "--frames", "2",
           "--warmup", "1", "--persons", "1,5", "--size", "160x160", "--threads", "1", "--no-progress",
           "--out", str(out), *model_args, *torch_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ORT FP32" in proc.stdout and "box AP" in proc.stdout

    report = json.loads((out / "bench.json").read_text())
    m = report["machine"]
    assert m["cpu"] and m["usable_cpus"] >= 1 and m["versions"]["onnxruntime"] and m["versions"]["numpy"]
    assert report["config"]["val_images"] == 6 and report["config"]["persons"] == [1, 5]
    names = [r["name"] for r in report["rows"]]
    assert "ORT FP32" in names
    if torch_args:
        assert "torch FP32" in names
    else:  # default models: a torch row whenever torch imports, otherwise a stated reason
        assert "torch FP32" in names or any(s["name"] == "torch FP32" for s in report["skipped"])
    for row in report["rows"]:
        assert "error" not in row, row.get("error")
        assert row["fps"] > 0 and row["frames"] == 2
        for stage in ("total", "detector"):
            st = row["stages"][stage]
            assert st["count"] == 2 and st["p50"] <= st["p90"] <= st["p99"]
        assert set(row["persons"]) == {"1", "5"}
        for k, v in row["persons"].items():
            assert v["gt_people"] == int(k) and v["pose_ms_p50"] > 0
        for key in ("bbox_AP", "keypoints_AP", "bbox_AP50", "keypoints_AP75"):
            assert -1.0 <= row["ap"][key] <= 1.0
        assert row["ap"]["images"] == 6
    skipped = {s["name"] for s in report["skipped"]}
    assert {"ORT FP16", "ORT INT8"} <= skipped | set(names)
    val = json.loads(Path(report["config"]["val"]["ann"]).read_text())
    assert len(val["images"]) == 6

    md = (out / "bench.md").read_text()
    assert "| row | FPS |" in md and "| ORT FP32 |" in md and "Pose latency vs persons" in md
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.slow
def test_soak_reports_memory_and_rate(tmp_path):
    model_args, _ = _models(tmp_path)
    out = tmp_path / "soak"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(REPO / "benchmarks" / "soak.py"), "--frames", "24", "--pool", "6", "--size", "128x128",
           "--max-people", "3", "--warmup", "4", "--report-every", "8", "--threads", "1", "--tracemalloc", "5",
           "--out", str(out),
           *[a for a in model_args if a != "--ap-threshold"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "soak.json").read_text())
    rss = report["rss_mb"]
    assert set(rss) == {"before_first_frame", "start", "middle", "end"} and all(v > 10 for v in rss.values())
    assert report["rss_growth"] == pytest.approx((rss["end"] - rss["start"]) / rss["start"])
    assert [w["frame"] for w in report["windows"]] == [8, 16, 24] and all(w["fps"] > 0 for w in report["windows"])
    assert "RSS growth" in proc.stdout
    traced = report["tracemalloc"]
    assert (traced["from_frame"], traced["to_frame"]) == (4, 24) and len(traced["top"]) <= 5
    assert all(e["size_diff_kib"] > 0 and ":" in e["where"] for e in traced["top"])
    assert "Python allocations that grew" in proc.stdout


@pytest.mark.slow
def test_demo_writes_video_results_and_table(tmp_path, monkeypatch):
    """run_demo end to end on CI-sized settings; the precision it used is stated."""
    cv2 = pytest.importorskip("cv2")
    model_args, _ = _models(tmp_path)
    if model_args:  # no shipped weights yet: the demo runs on the randomly initialised exports
        import edgepose.models.defaults as defaults

        det, pose = model_args[1], model_args[3]
        monkeypatch.setattr(defaults, "default_model_paths", lambda cache_dir=None, force=False: (det, pose))
    from edgepose.workflows.demo import DemoResult, run_demo

    out = tmp_path / "out"
    result = run_demo(out, frames=5, people=2, size=(128, 128), val_images=4, progress=False)
    assert isinstance(result, DemoResult)
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary == json.loads(json.dumps(result.to_dict()))  # the file holds the whole result
    assert summary["precision"] in ("int8", "fp32") and summary["note"]
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 5
    records = json.loads((out / "results.json").read_text())
    assert isinstance(records, list) and records, "the defaults found nobody in the demo clip"
    for r in records:
        assert r["category_id"] == 1 and len(r["keypoints"]) == 51
    # the results load against the clip's own annotations (image ids 1..5) and COCOeval scores them
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    clip_ann = Path(summary["clip"]).with_suffix(".json")  # generate_clip writes <clip>.json
    gt = COCO(str(clip_ann))
    assert sorted(gt.getImgIds()) == [1, 2, 3, 4, 5]
    assert {r["image_id"] for r in records} <= set(gt.getImgIds())
    dt = gt.loadRes(str(out / "results.json"))
    for iou_type in ("bbox", "keypoints"):
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert 0 <= ev.stats[0] <= 1
    assert summary["clip_annotations"] == str(clip_ann)
    main_row = summary["rows"][0]
    assert main_row["precision"] == summary["precision"] and main_row["frames"] == 5 and main_row["used"]
    assert sum(r["used"] for r in summary["rows"]) == 1
    assert main_row["ap"]["images"] == 4 and "keypoints_AP" in main_row["ap"]
    if summary["precision"] != "fp32":
        assert [r["precision"] for r in summary["rows"]] == [summary["precision"], "fp32"]
    table = result.format()
    assert "box AP" in table and "precision used" in table and summary["note"] in table
