"""The INT8 part of ``edgepose build``: calibration feeds from the pipeline, the ONNX -> ONNX
quantization of :mod:`edgepose.quant`, and the accuracy-budget search on the eval set."""
from __future__ import annotations

import logging
from pathlib import Path

from edgepose.progress import say
from edgepose.workflows.measure import ap_summary, drop_points, eval_set, evaluate_files

log = logging.getLogger("edgepose")


def _say(progress, text):
    say(text, enabled=progress, prefix="build")


def calibration_feeds(src: dict, metas: dict, o, work) -> tuple:
    """``(CalibrationImages, {role: feeds}, calibration report entry)``."""
    from edgepose.workflows import calibration_feeds as cf

    calib = o.calib or "synthetic"
    _say(o.progress, f"reading calibration set {calib}")
    images = cf.load_calibration_images(calib, size=o.calib_size, progress=o.progress, cache_dir=o.cache_dir or work)
    info = {"source": images.source, "images": len(images), "sha256": images.sha256,
            "skipped": len(images.skipped), "method": o.calib_method,
            "percentile": 99.99 if o.calib_method == "percentile" else None}
    feeds = {"det": cf.det_feeds(images, src["det"], metas["det"], progress=o.progress)}
    _say(o.progress, "running the FP32 detector for pose-calibration crops")
    feeds["pose"] = cf.pose_feeds(images, src["det"], src["pose"], score_threshold=o.det_threshold,
                                  progress=o.progress)
    info["pose_crops"] = sum(len(next(iter(f.values()))) for f in feeds["pose"])
    return images, feeds, info


def build_int8(src: dict, outs: dict, metas: dict, o, work) -> dict:
    """Quantize both models into ``outs``; returns the report entries (calibration, models and,
    with a budget, ap)."""
    from edgepose.quant.build import quantize_with_feeds, split_feeds

    images, feeds, calib_info = calibration_feeds(src, metas, o, work)
    info = {"calibration": calib_info, "models": {}}
    graphs, holds = {}, {}
    for role in ("det", "pose"):
        calib_feeds, hold_feeds = (split_feeds(feeds[role], o.held_out) if o.max_ap_drop is not None
                                   else (feeds[role], feeds[role][:2]))
        _say(o.progress, f"calibrating {role} ({len(calib_feeds)} feeds, {o.calib_method})")
        graphs[role] = quantize_with_feeds(src[role], calib_feeds, hold_feeds, outs[role], o.calib_method,
                                           cpu_rewrite=o.cpu_rewrite, meta=metas[role],
                                           extra_meta={"calib_sha256": images.sha256}, progress=o.progress,
                                           threads=o.threads)
        info["models"][role] = graphs[role].entry
        holds[role] = hold_feeds
    if o.max_ap_drop is not None:
        info["ap"] = _fit_budget(src, outs, metas, graphs, holds, info, o, work)
    return info


def _fit_budget(src, outs, metas, graphs, holds, info, o, work) -> dict:
    """Keep the most sensitive layers in FP32 until box and keypoint AP are within
    ``o.max_ap_drop`` points of FP32 (the final graphs replace ``outs``); the ``ap`` entry."""
    ann, images_dir = eval_set(o.eval_ann, o.eval_images, o.eval_size, o.cache_dir or work)
    _say(o.progress, f"accuracy budget {o.max_ap_drop} AP points on {ann}")
    baseline = evaluate_files(src["det"], src["pose"], ann, images_dir, threads=o.threads)
    full = evaluate_files(outs["det"], outs["pose"], ann, images_dir, threads=o.threads)
    full_drops = drop_points(baseline, full)
    entry = {"eval_set": str(ann), "fp32": ap_summary(baseline), "int8_full": ap_summary(full),
             "max_ap_drop": o.max_ap_drop,
             "drop_points_full_int8": {k: round(v, 3) for k, v in full_drops.items()}}
    if all(d <= o.max_ap_drop + 1e-9 for d in full_drops.values()):  # full INT8 already fits the budget
        return {**entry, "int8": ap_summary(full), "budget_met": True,
                "drop_points": {k: round(v, 3) for k, v in full_drops.items()}, "search": []}
    result = _budget_search(src, outs, metas, graphs, holds, info, o, work, (ann, images_dir), baseline)
    return {**entry, "int8": ap_summary(result["metrics"]), "budget_met": result["met"],
            "drop_points": {k: round(v, 3) for k, v in result["drops"].items()}, "search": result["history"]}


def _budget_search(src, outs, metas, graphs, holds, info, o, work, eval_files, baseline) -> dict:
    import onnx

    from edgepose.io_utils import atomic_path
    from edgepose.quant.int8 import quantizable_nodes
    from edgepose.quant.sensitivity import QuantPlan, budget_search, layer_sensitivity

    qplans = {}
    for role, graph in graphs.items():
        _say(o.progress, f"layer sensitivity of {role} on {len(holds[role])} held-out feeds")
        candidates = [n for n in quantizable_nodes(graph.prepared) if n not in graph.always]
        ranking = layer_sensitivity(graph.prepared, graph.ranges, holds[role], candidates=candidates,
                                    progress=o.progress, threads=o.threads)
        info["models"][role]["sensitivity_top"] = [{"node": n, "rel_err": float(s)} for n, s in ranking[:10]]
        qplans[role] = QuantPlan(role, graph.prepared, graph.ranges, ranking, metas[role], graph.extra_meta,
                                 always=graph.always)

    def evaluate(paths):
        return evaluate_files(paths["det"], paths["pose"], *eval_files, threads=o.threads)

    result = budget_search(qplans, evaluate, baseline, o.max_ap_drop,
                           blame={"bbox_AP": ["det"], "keypoints_AP": ["pose", "det"]},
                           work_dir=Path(work) / "budget")
    for role, path in result["paths"].items():
        final = onnx.load(str(path))
        with atomic_path(outs[role]) as tmp:
            onnx.save(final, str(tmp))
        info["models"][role]["fp32_nodes"] = result["kept"][role]
    return result

