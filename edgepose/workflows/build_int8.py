"""The INT8 part of ``edgepose build``: calibration feeds from the pipeline, the ONNX -> ONNX
quantization of :mod:`edgepose.quant`, agreement with FP32 on held-out images, and the
accuracy-budget search on the eval set.

The calibration set is split: about a quarter of its images (evenly spaced) are held out and
never calibrate.  On them every candidate is scored against FP32 with a task metric
(:mod:`edgepose.workflows.agreement`: box AP and person count for the detector, keypoint AP
on the same crops for the pose model).  The one statistics pass gives the ranges of every
method (entropy, minmax, percentile, mse); without ``--calib-method`` the method that agrees
best is used.  When even that stays under ``min_agreement``, the most sensitive layers are
kept in FP32 (:func:`edgepose.quant.sensitivity.budget_search`) until it agrees; when that is
not allowed (``max_fp32_layers``) or not enough, the build fails with the numbers and writes
nothing -- a collapsed model is never written with exit 0.

Cost (calib/README.md "Calibration cost"): the detector's statistics pass also gives the pose
crops (its outputs are decoded, no second FP32 detector run), the judge's FP32 run on the
held-out images gives the held-out crops, and the report records the seconds of each step.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgepose.errors import CalibrationError, QuantizationError
from edgepose.progress import say
from edgepose.workflows.measure import ap_summary, drop_points, eval_set, evaluate_files

log = logging.getLogger("edgepose")


def _say(progress, text):
    say(text, enabled=progress, prefix="build")


def read_images(o, work) -> tuple:
    """``(all images, calibration part, held-out part)``: ``o.calib_size`` images calibrate and
    about ``o.held_out`` of that many again are held out (never calibrate)."""
    from edgepose.workflows import calibration_feeds as cf
    from edgepose.workflows.pose_calibration import warn_if_few

    calib = o.calib or "synthetic"
    asked_hold = max(1, int(round(o.calib_size * o.held_out)))
    _say(o.progress, f"reading calibration set {calib}")
    images = cf.load_calibration_images(calib, size=o.calib_size + asked_hold, progress=o.progress,
                                        cache_dir=o.cache_dir or work, warn_few=False)  # warned below
    if len(images) >= o.calib_size + asked_hold:
        used, held = images.split(count=asked_hold)
    else:  # fewer than asked: keep the held-out share
        used, held = images.split(o.held_out)
    warn_if_few("detector calibration images", len(used), o.calib_size, images.source,
                note=f" (of {len(images)}, after holding {len(held)} out to measure agreement)")
    return images, used, held


@dataclass
class Calibration:
    """Feeds, held-out feeds and the calibrated graphs (one statistics pass each) of both roles."""

    feeds: dict
    holds: dict
    graphs: dict  # {role: CalibratedGraph}
    info: dict  # the report's "calibration" entry


def calibrate_models(src: dict, metas: dict, o, images, used, held, judge=None) -> Calibration:
    """Detector feeds, the detector's statistics pass (whose own outputs give the pose crops:
    :class:`~edgepose.workflows.pose_calibration.CropsFromOutputs`; CornerNet and COCO
    ground-truth boxes keep their own crop paths), the pose feeds and the pose statistics pass.
    ``judge``: the :class:`~edgepose.workflows.agreement.AgreementJudge` on ``held``, whose
    FP32 detections give the held-out crops (else the FP32 detector runs on ``held``)."""
    from edgepose.quant.build import calibrate
    from edgepose.workflows import calibration_feeds as cf
    from edgepose.workflows.pose_calibration import NOISY_CROPS, CropsFromOutputs, crop_feeds, pose_crops, warn_if_few

    clock = _Clock()
    feeds, infos = cf.det_inputs(used, src["det"], metas["det"], progress=o.progress)
    feeds, holds = {"det": feeds}, {"det": cf.det_feeds(held, src["det"], metas["det"])}
    own = opened = None
    if used.boxes is None and metas["det"].task != "cornernet":
        from edgepose.pipeline.detector import Detector

        detector = judge.fp32.detector if judge is not None else Detector(
            opened := _fp32_runner(src["det"], o.threads), score_threshold=o.det_threshold)
        own = CropsFromOutputs(used.images, infos, detector, metas["pose"])
    clock.lap("det_feeds")
    try:
        graphs = {"det": _calibrate(calibrate, "det", src, feeds, o, on_outputs=own)}
    finally:
        if opened is not None:
            opened.close()
    clock.lap("det_statistics")
    _say(o.progress, "pose-calibration crops" + (" (ground-truth boxes)" if used.boxes is not None else
                                                 " from the FP32 detector"))
    crops = pose_crops(used, src["det"], src["pose"], o.det_threshold, o.calib_size, progress=o.progress,
                       threads=o.threads, found=None if own is None else own.crops)
    warn_if_few("pose crops", len(crops.crops), o.calib_size, f"{images.source} ({crops.boxes_from})", NOISY_CROPS)
    feeds["pose"] = crop_feeds(crops.crops, src["pose"])
    clock.lap("pose_feeds")
    holds["pose"] = _held_out_crops(src, held, o, judge) or feeds["pose"][:2]  # nobody: sensitivity uses calib crops
    clock.lap("held_out_pose_feeds")
    graphs["pose"] = _calibrate(calibrate, "pose", src, feeds, o)
    clock.lap("pose_statistics")
    info = {"source": images.source, "images": len(images), "sha256": images.sha256,
            "skipped": len(images.skipped), "method": o.calib_method or "auto",
            "percentile": 99.99 if o.calib_method in (None, "percentile") else None,
            "calib_size": o.calib_size, "calibration_images": len(used), "det_images": len(used),
            "held_out_images": len(held), "held_out_disjoint": len(used) + len(held) == len(images),
            "pose_crops": len(crops.crops), "pose_crops_available": crops.available,
            "pose_crops_from": crops.boxes_from, "seconds": clock.laps}
    return Calibration(feeds, holds, graphs, info)


class _Clock:
    """Wall seconds of consecutive steps (``laps``: {step: s})."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self._last, self.laps = self._now(), {}

    def lap(self, step: str):
        now = self._now()
        self.laps[step] = round(now - self._last, 3)
        self._last = now


def _fp32_runner(path, threads):
    from edgepose.backends.factory import load_runner

    return load_runner(str(path), backend="onnxruntime", providers=["CPUExecutionProvider"], threads=threads)


def _calibrate(calibrate, role, src, feeds, o, on_outputs=None):
    _say(o.progress, f"calibrating {role} ({len(feeds[role])} feeds)")
    return calibrate(src[role], feeds[role], cpu_rewrite=o.cpu_rewrite, progress=o.progress, threads=o.threads,
                     on_outputs=on_outputs)


def _held_out_crops(src, held, o, judge) -> list:
    """Pose feeds of the people the FP32 detector finds on the held-out images (the judge's
    detections when there is a judge); [] when there are none."""
    from edgepose.workflows.calibration_feeds import _evenly
    from edgepose.workflows.pose_calibration import crop_feeds, crops_of_boxes, pose_crops

    if not held.images:
        return []
    if judge is None:
        try:
            return crop_feeds(pose_crops(held, src["det"], src["pose"], o.det_threshold, 512).crops, src["pose"])
        except CalibrationError:
            return []
    crops = [c for image, found in zip(held.images, judge.detections)
             for c in crops_of_boxes(image, found.boxes, judge.fp32.pose_meta)]
    return crop_feeds(_evenly(crops, 512), src["pose"]) if crops else []


def read_feeds(src: dict, metas: dict, o, work) -> tuple:
    """``(calibration images, held-out images, {role: feeds}, {role: held-out feeds}, report
    entry)`` of :func:`read_images` + :func:`calibrate_models` (without a judge)."""
    images, used, held = read_images(o, work)
    cal = calibrate_models(src, metas, o, images, used, held)
    return images, held, cal.feeds, cal.holds, cal.info


def build_int8(src: dict, outs: dict, metas: dict, o, work) -> dict:
    """Quantize both models into ``outs``; returns the report entries (calibration, models and,
    with a budget, ap)."""
    from edgepose.workflows.agreement import AgreementJudge

    images, used, held = read_images(o, work)
    _say(o.progress, f"FP32 reference on {len(held)} held-out images")
    with AgreementJudge(src, held.images, o.det_threshold, o.threads) as judge:
        cal = calibrate_models(src, metas, o, images, used, held, judge)
        info = {"calibration": cal.info, "models": {}}
        graphs = {}
        for role in ("det", "pose"):
            clock = _Clock()
            graphs[role] = choose_method(role, cal.graphs[role], outs[role], cal.holds[role], judge, metas[role],
                                         {"calib_sha256": images.sha256}, o, Path(work))
            clock.lap("quantize_and_agreement")
            graphs[role].entry["agreement"]["seconds"] = clock.laps["quantize_and_agreement"]
            info["models"][role] = graphs[role].entry
    if o.max_ap_drop is not None:
        info["ap"] = _fit_budget(src, outs, metas, graphs, cal.holds, info, o, work)
    return info


def choose_method(role, calibrated, out_path, hold_feeds, judge, meta, extra, o, work):
    """Quantize with every candidate method, score each against FP32 on the held-out images,
    keep the best (or the one asked for) in ``out_path``; keep layers in FP32 or fail when it
    does not reach ``o.min_agreement``."""
    from edgepose.quant.build import quantize_method
    from edgepose.quant.calibration import METHODS

    methods = [o.calib_method] if o.calib_method else list(METHODS)
    trials = {}
    for method in methods:
        path = work / f"{role}.{method}.onnx"
        graph = quantize_method(calibrated, method, path, hold_feeds, meta=meta, extra_meta=extra)
        trials[method] = (graph, judge(role, path), path)
        _say(o.progress, f"{role} {method}: {trials[method][1].text()} vs FP32")
    best = max(methods, key=lambda m: -1.0 if trials[m][1].ap is None else trials[m][1].ap)  # first of equals
    graph, agreement, path = trials[best]
    graph.entry["calib_method"] = best
    graph.entry["agreement"] = {
        "held_out_images": len(judge.images), "min_ap_vs_fp32": o.min_agreement,
        "metric": "bbox AP vs FP32 detections" if role == "det" else "keypoint AP (OKS) vs FP32 on the same crops",
        "methods": {m: trials[m][1].as_dict() for m in methods},
        "chosen": best, "chosen_by": "--calib-method" if o.calib_method else "agreement",
    }
    if agreement.ap is None:
        log.warning("edgepose build: the FP32 detector finds nobody on the %d held-out calibration images, so the "
                    "INT8 %s model's agreement with FP32 cannot be measured; using %s -- calibrate on images "
                    "that show people", len(judge.images), role, best)
    elif agreement.ap < o.min_agreement:
        graph, agreement, path = _keep_layers(role, graph, trials, hold_feeds, judge, meta, o, work)
    graph.entry["agreement"]["final"] = agreement.as_dict()
    shutil.copyfile(path, out_path)
    return graph


def _keep_layers(role, graph, trials, hold_feeds, judge, meta, o, work):
    """Keep the most sensitive layers of ``graph`` in FP32 until it agrees with FP32 (at most
    ``o.max_fp32_layers``); QuantizationError with every number when it cannot."""
    from edgepose.quant.int8 import quantizable_nodes
    from edgepose.quant.sensitivity import QuantPlan, budget_search, layer_sensitivity

    _say(o.progress, f"{role}: no method reaches AP {o.min_agreement} vs FP32; keeping sensitive layers in FP32")
    candidates = [n for n in quantizable_nodes(graph.prepared) if n not in graph.always]
    limit = len(candidates) if o.max_fp32_layers is None else int(o.max_fp32_layers)
    _say(o.progress, f"layer sensitivity of {role}: {len(candidates)} layers on {len(hold_feeds)} held-out feeds")
    ranking = layer_sensitivity(graph.prepared, graph.ranges, hold_feeds, candidates=candidates,
                                progress=o.progress, threads=o.threads)[:limit] if limit else []
    plan = QuantPlan(role, graph.prepared, graph.ranges, ranking, meta, graph.extra_meta, always=graph.always)
    scores = {}

    def evaluate(paths):
        scores[str(paths[role])] = judge(role, paths[role])
        return {"agreement": scores[str(paths[role])].ap}

    result = budget_search({role: plan}, evaluate, {"agreement": 1.0}, (1.0 - o.min_agreement) * 100,
                           blame={"agreement": [role]}, work_dir=work / f"agree_{role}")
    path = result["paths"][role]
    final = scores[str(path)]
    if not result["met"]:
        tried = "; ".join(f"{m} {a.text()}" for m, (_, a, _) in trials.items())
        raise QuantizationError(
            f"INT8 {role} model collapses against FP32 on {len(judge.images)} held-out calibration images "
            f"({tried}; need AP >= {o.min_agreement}); keeping {len(result['kept'][role]) - len(graph.always)} "
            f"sensitive layers in FP32 reached {final.text()}. Nothing was written. Calibrate on images like "
            "the deployment scene, allow more FP32 layers (--max-fp32-layers), lower --min-agreement or build --fp16")
    graph.always = result["kept"][role]
    graph.entry["fp32_nodes"] = graph.always
    graph.entry["agreement"]["kept_fp32_for_agreement"] = len(graph.always)
    return graph, final, path


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
