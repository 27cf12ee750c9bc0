"""Measurements the build flows report: pipeline AP/FPS of two ONNX files, ONNX Runtime CPU
latency, the eval set, and one real input per model for timing."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgepose.onnx_graph import input_shape
from edgepose.ort_session import create_session

AP_KEYS = ("bbox_AP", "keypoints_AP")


def ort_latency_ms(paths: dict, feed: dict, runs: int = 20, threads: int = 2) -> dict:
    """Median ONNX Runtime CPU latency (ms) of one call with ``feed`` for each of ``paths``
    (name -> ONNX file).  The sessions run interleaved (a, b, a, b, ...) after 3 warm-ups,
    so load from other processes hits them alike; CSE is disabled as the INT8 runner does."""
    sessions = {name: create_session(path, threads=threads, disable_cse=True) for name, path in paths.items()}
    for session in sessions.values():
        for _ in range(3):
            session.run(None, feed)
    times = {name: [] for name in sessions}
    for _ in range(runs):
        for name, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, feed)
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: float(np.median(values)) for name, values in times.items()}


def evaluate_files(det_path, pose_path, ann_file, images_dir, threads=None, limit=None, progress=False,
                   score_threshold: float = 0.1) -> dict:
    """Box/keypoint AP (0-1) and FPS of the pipeline built from two ONNX files on ORT CPU
    (detector threshold 0.1 as `edgepose eval`: low thresholds give the full PR curve)."""
    from edgepose.eval.dataset_eval import evaluate_pipeline
    from edgepose.pipeline.pipeline import Pipeline

    runner_kw = {"providers": ["CPUExecutionProvider"], "disable_cse": True}
    if threads:
        runner_kw["threads"] = threads
    pipe = Pipeline.from_files(str(det_path), str(pose_path), backend="onnxruntime", runner_kw=runner_kw,
                               score_threshold=score_threshold)
    metrics, _, _ = evaluate_pipeline(pipe, ann_file, images_dir, limit=limit, progress=progress)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def eval_set(eval_ann, eval_images, eval_size, work) -> tuple:
    """``(annotation file, images folder)``: the given COCO set, or a synthetic validation set
    of ``eval_size`` images (seed 1, disjoint from the calibration seed) made in ``work``."""
    if eval_ann:
        ann = Path(eval_ann)
        images = Path(eval_images) if eval_images else (ann.parent / "images" if (ann.parent / "images").is_dir()
                                                        else ann.parent)
        return ann, images
    from edgepose.data.synthetic import generate_dataset

    out = Path(work) / f"synthetic_val_n{eval_size}_s1"
    ann = Path(generate_dataset(out, num_images=int(eval_size), seed=1, progress=False))
    return ann, ann.parent / "images"


def ap_summary(metrics: dict) -> dict:
    """The AP/FPS fields of ``metrics`` rounded for report.json."""
    return {k: round(float(metrics[k]), 5) for k in ("bbox_AP", "keypoints_AP", "fps") if k in metrics}


def drop_points(baseline: dict, metrics: dict) -> dict:
    """AP drop of ``metrics`` from ``baseline`` in points, per AP key."""
    return {k: (baseline[k] - metrics[k]) * 100 for k in AP_KEYS}


def sample_feeds(src: dict, metas: dict, cache) -> dict:
    """One real input per model for the latency measurement: a preprocessed synthetic image
    for the detector and a crop of a person the FP32 detector finds for the pose model
    (random data only when it finds nobody)."""
    from edgepose.workflows import calibration_feeds

    images = calibration_feeds.load_calibration_images("synthetic:2:99", size=2, progress=False, cache_dir=cache)
    feeds = {"det": calibration_feeds.det_feeds(images, src["det"], metas["det"])[0]}
    crops, _ = calibration_feeds.detector_crops(images, src["det"], src["pose"], score_threshold=0.1)
    name, shape = input_shape(src["pose"])
    if crops:
        batch = np.concatenate([crops[0]] * shape[0]) if shape[0] > 1 else crops[0]
        feeds["pose"] = {name: np.ascontiguousarray(batch, np.float32)}
    else:
        feeds["pose"] = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return feeds


def latency_entry(fp32_path, new_path, precision: str, feed: dict, threads) -> dict:
    """The ``ort_cpu_ms`` entry of report.json: FP32 vs ``precision`` median latency."""
    ms = ort_latency_ms({"fp32": fp32_path, precision: new_path}, feed, threads=threads or 2)
    fp32_ms, new_ms = ms["fp32"], ms[precision]
    return {"fp32": round(fp32_ms, 3), precision: round(new_ms, 3),
            "speedup": round(fp32_ms / max(new_ms, 1e-9), 3), "threads": threads or 2}
