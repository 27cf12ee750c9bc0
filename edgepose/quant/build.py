"""``build_precision``: FP32 detector + pose ONNX -> FP16 or INT8 ONNX files and a report.

INT8 flow:

1. read the calibration set (:mod:`edgepose.quant.calibration`), hash it;
2. prepare both FP32 graphs (BN folding; optional ConvTranspose rewrite for CPU targets);
3. detector feeds = ``ctdet_preprocess`` of the images; pose feeds = crops of the people the
   FP32 detector finds on them (as the pipeline will see them);
4. one statistics pass per model, ranges by ``calib_method`` (graph outputs: full range);
5. Q/DQ via ``quantize_static`` (:mod:`edgepose.quant.int8`); every graph is linted;
6. with ``max_ap_drop``: per-layer sensitivity on a held-out slice of the feeds, then the
   accuracy-budget search on the eval set (:mod:`edgepose.quant.sensitivity`);
7. ``DIR/det.int8.onnx``, ``DIR/pose.int8.onnx`` and ``DIR/report.json`` (ranges summary,
   method, calibration-set SHA-256, layers kept in FP32, AP/FPS when measured, ONNX Runtime
   QLinearConv counts), with the TensorRT engines when asked -- the whole set written into a
   hidden sibling folder and swapped into place at the end, after every option and input was
   checked (:mod:`edgepose.quant.build_checks`).
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from edgepose.compare import compare_runs
from edgepose.errors import UsageError
from edgepose.onnx_graph import input_shape
from edgepose.ort_session import create_session, run_feeds
from edgepose.progress import say
from edgepose.quant.build_checks import PRECISIONS, build_engines, check_build_args, drop_stale_engines

log = logging.getLogger("edgepose")

__all__ = ["PRECISIONS", "build_engines", "build_precision", "evaluate_files", "ort_latency_ms"]


def _say(progress, text):
    say(text, enabled=progress, prefix="build")


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


def _eval_set(eval_ann, eval_images, eval_size, work):
    if eval_ann:
        ann = Path(eval_ann)
        images = Path(eval_images) if eval_images else (ann.parent / "images" if (ann.parent / "images").is_dir()
                                                        else ann.parent)
        return ann, images
    from edgepose.data.synthetic import generate_dataset

    out = Path(work) / f"synthetic_val_n{eval_size}_s1"
    ann = Path(generate_dataset(out, num_images=int(eval_size), seed=1, progress=False))
    return ann, ann.parent / "images"


def _split(feeds: list, held_out: float):
    n = len(feeds)
    if n < 2:
        return feeds, feeds
    k = min(n - 1, max(1, int(round(n * held_out))))
    hold = set(np.linspace(0, n - 1, k).round().astype(int).tolist())
    return [f for i, f in enumerate(feeds) if i not in hold], [feeds[i] for i in sorted(hold)]


def _max_rel_err(path_a, path_b, feeds) -> dict:
    """Per output, the worst ``max |b - a| / max |a|`` over ``feeds``."""
    rows = compare_runs(run_feeds(create_session(path_a, threads=1, disable_cse=True), feeds),
                        run_feeds(create_session(path_b, threads=1, disable_cse=True), feeds))
    return {row.name: row.max_rel for row in rows}


def build_precision(det_onnx=None, pose_onnx=None, precision: str = "int8", calib=None,
                    calib_method: str = "entropy", max_ap_drop: float | None = None, out_dir="build",
                    cpu_rewrite: bool = False, progress: bool = True, calib_size: int = 64,
                    eval_ann=None, eval_images=None, eval_size: int = 200, measure: bool | None = None,
                    det_threshold: float = 0.1, held_out: float = 0.25, threads: int | None = 2,
                    benchmark: bool = True, cache_dir=None, engines: dict | None = None) -> dict:
    """Write ``DIR/det.<precision>.onnx``, ``DIR/pose.<precision>.onnx`` and ``DIR/report.json``
    (and, with ``engines``, the TensorRT engines); return the report dict.

    ``calib``: calibration source (folder, video, COCO json, ``synthetic[:N[:SEED]]``);
    INT8 only, default ``synthetic``.  ``max_ap_drop``: accuracy budget in AP points (INT8).
    ``eval_ann``/``eval_images``: the eval set for AP (default: a synthetic validation set of
    ``eval_size`` images, seed 1, disjoint from the calibration seed); AP is measured when
    ``measure`` is true or a budget is given.  ``det_threshold``: detector score for the
    pose-calibration crops.  ``threads``: ORT CPU threads for timing/eval.  ``engines``:
    options for :func:`build_engines` (workspace_mb, dla_core, pose_batch, force); where
    TensorRT cannot be used the report says why (``engine_note``), a real build failure raises.

    Every option and input is checked before anything is written.  The set is written into a
    hidden sibling of ``DIR`` and swapped into place at the end (:func:`edgepose.outputs.staged_dir`):
    a failure or Ctrl-C leaves the previous set untouched and no partial files.
    """
    from edgepose.outputs import staged_dir

    det_onnx, pose_onnx, metas = check_build_args(det_onnx, pose_onnx, precision, calib, max_ap_drop, out_dir,
                                                   calib_size, eval_ann, eval_images, eval_size, det_threshold,
                                                   threads)
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as stage:
        report = _build_into(stage, out_dir, det_onnx, pose_onnx, metas, precision, calib, calib_method,
                             max_ap_drop, cpu_rewrite, progress, calib_size, eval_ann, eval_images, eval_size,
                             measure, det_threshold, held_out, threads, benchmark, cache_dir, engines)
    report["report"] = str(out_dir / "report.json")
    return report


def _build_into(stage, out_dir, det_onnx, pose_onnx, metas, precision, calib, calib_method, max_ap_drop,
                cpu_rewrite, progress, calib_size, eval_ann, eval_images, eval_size, measure, det_threshold,
                held_out, threads, benchmark, cache_dir, engines) -> dict:
    """The build proper, writing into ``stage``; paths in the report are the final ones."""
    import shutil

    from edgepose.io_utils import atomic_path, sha256_file

    measure = bool(measure) or max_ap_drop is not None
    src = {"det": det_onnx, "pose": pose_onnx}
    outs = {role: stage / f"{role}.{precision}.onnx" for role in src}
    report = {
        "precision": precision,
        "inputs": {role: {"path": str(p), "sha256": sha256_file(p)} for role, p in src.items()},
        "outputs": {role: str(out_dir / p.name) for role, p in outs.items()},
        "models": {},
    }
    work = Path(tempfile.mkdtemp(prefix="edgepose_build_"))
    try:
        if precision == "fp16":
            _build_fp16(src, outs, metas, report, calib, calib_size, measure, cache_dir or work)
        else:
            report.update(_build_int8(src, outs, metas, calib, calib_method, calib_size, cpu_rewrite, det_threshold,
                                      held_out, max_ap_drop, progress, work, eval_ann, eval_images, eval_size, threads,
                                      cache_dir))
        if measure and "ap" not in report:
            ann, images_dir = _eval_set(eval_ann, eval_images, eval_size, cache_dir or work)
            _say(progress, f"measuring AP on {ann}")
            base = evaluate_files(det_onnx, pose_onnx, ann, images_dir, threads=threads)
            new = evaluate_files(outs["det"], outs["pose"], ann, images_dir, threads=threads)
            report["ap"] = {"eval_set": str(ann), "fp32": _ap(base), precision: _ap(new),
                            "drop_points": {k: round((base[k] - new[k]) * 100, 3) for k in ("bbox_AP", "keypoints_AP")}}
        _describe_outputs(report, src, outs, metas, precision, benchmark, threads, cache_dir or work)
        if engines is not None:
            built, note = build_engines(report, stage, **engines)
            report["engines"] = [str(out_dir / Path(e).name) for e in built]
            report["engine_note"] = note
        drop_stale_engines(stage, outs, report.get("engines", []))
        with atomic_path(stage / "report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2, sort_keys=True, default=_json_default))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _build_fp16(src, outs, metas, report, calib, calib_size, measure, cache):
    from edgepose.quant.calibration import det_feeds, load_calibration_images
    from edgepose.quant.fp16 import convert_fp16

    for role, path in src.items():
        _, kept = convert_fp16(path, outs[role])
        report["models"][role] = {"fp32_nodes": kept}
    if calib is not None or measure:  # agreement on real inputs
        images = load_calibration_images(calib or "synthetic", size=min(8, calib_size), progress=False,
                                         cache_dir=cache)
        feeds = det_feeds(images, src["det"], metas["det"])
        report["models"]["det"]["max_rel_err_vs_fp32"] = _max_rel_err(src["det"], outs["det"], feeds)


def _describe_outputs(report, src, outs, metas, precision, benchmark, threads, cache):
    """Lint, fusion counts, hashes and ORT CPU latency of every written graph."""
    import onnx

    from edgepose.io_utils import sha256_file

    samples = None
    for role, path in outs.items():
        model = onnx.load(str(path))
        entry = report["models"].setdefault(role, {})
        if precision == "int8":
            from edgepose.quant.float_ops import float_ops_report
            from edgepose.quant.int8 import fusion_summary
            from edgepose.quant.lint import lint_qdq

            issues = lint_qdq(model, allow_float=entry.get("fp32_nodes", ()))
            entry["lint"] = [str(i) for i in issues] or "clean"
            entry["float_ops"] = float_ops_report(model, kept=entry.get("fp32_nodes", ()))
            entry["ort_cpu_fusion"] = fusion_summary(path)
        entry["sha256"] = sha256_file(path)
        if benchmark:
            if samples is None:
                samples = _sample_feeds(src, metas, cache)
            ms = ort_latency_ms({"fp32": src[role], precision: path}, samples[role], threads=threads or 2)
            fp32_ms, new_ms = ms["fp32"], ms[precision]
            entry["ort_cpu_ms"] = {"fp32": round(fp32_ms, 3), precision: round(new_ms, 3),
                                   "speedup": round(fp32_ms / max(new_ms, 1e-9), 3), "threads": threads or 2}


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _ap(metrics: dict) -> dict:
    return {k: round(float(metrics[k]), 5) for k in ("bbox_AP", "keypoints_AP", "fps") if k in metrics}


def _sample_feeds(src: dict, metas: dict, cache) -> dict:
    """One real input per model for the latency measurement: a preprocessed synthetic image
    for the detector and a crop of a person the FP32 detector finds for the pose model
    (random data only when it finds nobody)."""
    from edgepose.quant import calibration

    images = calibration.load_calibration_images("synthetic:2:99", size=2, progress=False, cache_dir=cache)
    feeds = {"det": calibration.det_feeds(images, src["det"], metas["det"])[0]}
    crops, _ = calibration.detector_crops(images, src["det"], src["pose"], score_threshold=0.1)
    name, shape = input_shape(src["pose"])
    if crops:
        batch = np.concatenate([crops[0]] * shape[0]) if shape[0] > 1 else crops[0]
        feeds["pose"] = {name: np.ascontiguousarray(batch, np.float32)}
    else:
        feeds["pose"] = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return feeds


def _build_int8(src, outs, metas, calib, calib_method, calib_size, cpu_rewrite, det_threshold, held_out,
                max_ap_drop, progress, work, eval_ann, eval_images, eval_size, threads, cache_dir) -> dict:
    import onnx

    from edgepose.quant import calibration
    from edgepose.quant.int8 import cpu_float_nodes, prepare_fp32, quantizable_nodes, quantize_int8

    if calib_method not in calibration.METHODS:
        raise UsageError(f"unknown --calib-method {calib_method!r}; choose one of {', '.join(calibration.METHODS)}")
    calib = calib or "synthetic"
    _say(progress, f"reading calibration set {calib}")
    images = calibration.load_calibration_images(calib, size=calib_size, progress=progress, cache_dir=cache_dir or work)
    info = {"calibration": {"source": images.source, "images": len(images), "sha256": images.sha256,
                            "skipped": len(images.skipped), "method": calib_method,
                            "percentile": 99.99 if calib_method == "percentile" else None}}
    feeds = {"det": calibration.det_feeds(images, src["det"], metas["det"], progress=progress)}
    _say(progress, "running the FP32 detector for pose-calibration crops")
    feeds["pose"] = calibration.pose_feeds(images, src["det"], src["pose"], score_threshold=det_threshold, progress=progress)
    info["calibration"]["pose_crops"] = sum(len(next(iter(f.values()))) for f in feeds["pose"])

    plans = {}
    for role in ("det", "pose"):
        prepared, prep_info = prepare_fp32(src[role], cpu_rewrite=cpu_rewrite)
        calib_feeds, hold_feeds = (_split(feeds[role], held_out) if max_ap_drop is not None
                                   else (feeds[role], feeds[role][:2]))
        _say(progress, f"calibrating {role} ({len(calib_feeds)} feeds, {calib_method})")
        stats = calibration.collect_statistics(prepared, calibration.FeedReader(calib_feeds), progress=progress, threads=threads)
        ranges = calibration.compute_ranges(stats, calib_method, full_range=calibration.head_tensors(prepared))
        extra = {"calib_method": calib_method, "calib_sha256": images.sha256, "cpu_rewrite": bool(cpu_rewrite)}
        entry = {"prepare": prep_info, "ranges": calibration.summarize_ranges(ranges, stats),
                 "quantized_nodes": len(quantizable_nodes(prepared))}
        always = cpu_float_nodes(prepared) if cpu_rewrite else []
        entry["fp32_nodes"] = always
        qmodel = quantize_int8(prepared, ranges, outs[role], nodes_to_exclude=always, meta=metas[role],
                               extra_meta={**extra, "fp32_nodes": always})
        entry["cosine_vs_fp32_heldout"] = _cosines_models(prepared, qmodel, hold_feeds[:4])
        info.setdefault("models", {})[role] = entry
        plans[role] = (prepared, ranges, hold_feeds, extra, always)

    if max_ap_drop is None:
        return info

    from edgepose.quant.sensitivity import QuantPlan, budget_search, layer_sensitivity

    ann, images_dir = _eval_set(eval_ann, eval_images, eval_size, cache_dir or work)
    _say(progress, f"accuracy budget {max_ap_drop} AP points on {ann}")
    baseline = evaluate_files(src["det"], src["pose"], ann, images_dir, threads=threads)
    full = evaluate_files(outs["det"], outs["pose"], ann, images_dir, threads=threads)
    full_drops = {k: (baseline[k] - full[k]) * 100 for k in ("bbox_AP", "keypoints_AP")}
    if all(d <= max_ap_drop + 1e-9 for d in full_drops.values()):  # full INT8 already fits the budget
        info["ap"] = {"eval_set": str(ann), "fp32": _ap(baseline), "int8_full": _ap(full), "int8": _ap(full),
                      "max_ap_drop": max_ap_drop, "budget_met": True,
                      "drop_points": {k: round(v, 3) for k, v in full_drops.items()},
                      "drop_points_full_int8": {k: round(v, 3) for k, v in full_drops.items()}, "search": []}
        return info
    qplans = {}
    for role, (prepared, ranges, hold_feeds, extra, always) in plans.items():
        _say(progress, f"layer sensitivity of {role} on {len(hold_feeds)} held-out feeds")
        candidates = [n for n in quantizable_nodes(prepared) if n not in always]
        ranking = layer_sensitivity(prepared, ranges, hold_feeds, candidates=candidates, progress=progress,
                                    threads=threads)
        info["models"][role]["sensitivity_top"] = [{"node": n, "rel_err": float(s)} for n, s in ranking[:10]]
        qplans[role] = QuantPlan(role, prepared, ranges, ranking, metas[role], extra, always=always)

    def evaluate(paths):
        return evaluate_files(paths["det"], paths["pose"], ann, images_dir, threads=threads)

    result = budget_search(qplans, evaluate, baseline, max_ap_drop,
                           blame={"bbox_AP": ["det"], "keypoints_AP": ["pose", "det"]},
                           work_dir=Path(work) / "budget")
    for role, path in result["paths"].items():
        final = onnx.load(str(path))
        from edgepose.io_utils import atomic_path

        with atomic_path(outs[role]) as tmp:
            onnx.save(final, str(tmp))
        info["models"][role]["fp32_nodes"] = result["kept"][role]
    info["ap"] = {
        "eval_set": str(ann), "fp32": _ap(baseline), "int8_full": _ap(full), "int8": _ap(result["metrics"]),
        "max_ap_drop": max_ap_drop, "budget_met": result["met"],
        "drop_points": {k: round(v, 3) for k, v in result["drops"].items()},
        "drop_points_full_int8": {k: round((baseline[k] - full[k]) * 100, 3) for k in ("bbox_AP", "keypoints_AP")},
        "search": result["history"],
    }
    return info


def _cosines_models(fp32_model, q_model, feeds) -> dict:
    """Per output, the cosine of the FP32 and the quantized outputs over ``feeds`` together."""
    if not feeds:
        return {}
    rows = compare_runs(run_feeds(create_session(fp32_model, threads=1, disable_cse=True), feeds),
                        run_feeds(create_session(q_model, threads=1, disable_cse=True), feeds))
    return {row.name: round(row.cosine, 6) for row in rows}


