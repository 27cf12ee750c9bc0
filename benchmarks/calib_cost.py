"""Benchmark: INT8 calibration time vs one FP32 pass over the same images.

    PYTHONPATH=$PWD python benchmarks/calib_cost.py --images 32 [--det D.onnx --pose P.onnx] [--repeat 2]

FP32 pass: per image, ``ctdet_preprocess`` + one detector call + one pose call on the crops
of that image (what ``edgepose run`` does, minus decoding).  Calibration: what
``build --int8`` does before quantizing -- detector feeds, the pose crops, ``prepare_fp32``,
one statistics pass per model -- plus the ranges of every method.  ``--images N`` calibrates
the detector on N images and the pose model on N crops (``build --calib-size N``).

With this branch's code the pose crops come from the detector's own statistics pass
(:func:`edgepose.workflows.build_int8.calibrate_models`); with older code (run it with the
base commit on PYTHONPATH) the FP32 detector runs once more for them, as ``build`` did.
``--crops-from-builtin``: a detector with random weights finds nobody (its boxes fall
outside the image), so the FP32 pass times the pose model on the built-in detector's crops
(trained on synthetic people) and both paths calibrate the pose model on them (that extra
pass is not timed; the random detector's own crop pass -- old code -- or crop decoding from
its statistics pass -- this branch -- is).
Timings, not a test; run it with ``nice -n 10`` and read ratios from one run, interleaved
(before/after code: once per PYTHONPATH).  Prints one JSON line per repeat;
``cpu_ratio`` is process CPU time of calibration (all four methods' ranges) / FP32 pass,
steadier than wall time on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import time
import numpy as np


def _models(args):
    from edgepose.models.defaults import default_model_paths

    det, pose = default_model_paths()
    return (args.det or str(det)), (args.pose or str(pose)), str(det)


def _per_image_crops(images, crop_det, pose, threshold):
    from edgepose.workflows import calibration_feeds as F

    per_image = []
    for i in range(len(images)):
        one = F.CalibrationImages([images.images[i]], [images.names[i]], images.source)
        crops, _ = F.detector_crops(one, crop_det, pose, score_threshold=threshold)
        per_image.append(np.concatenate(crops) if crops else None)
    return per_image


def fp32_pass(images, det, pose, per_image_crops, threads) -> float:
    from edgepose.metadata import read_metadata
    from edgepose.ort_session import create_session
    from edgepose.pipeline.preprocess import ctdet_preprocess

    meta = read_metadata(det)
    det_s, pose_s = create_session(det, threads=threads), create_session(pose, threads=threads)
    det_in, pose_in = det_s.get_inputs()[0].name, pose_s.get_inputs()[0].name
    t0 = time.perf_counter()
    for image, crops in zip(images.images, per_image_crops):
        det_s.run(None, {det_in: ctdet_preprocess(image, meta)[0]})
        if crops is not None:
            pose_s.run(None, {pose_in: crops})
    return time.perf_counter() - t0


def _calibrate_new(images, det, pose, threshold, threads) -> tuple:
    """This branch: ``calibrate_models`` (crops decoded from the detector's statistics pass)."""
    from edgepose.metadata import read_metadata
    from edgepose.workflows import calibration_feeds as F
    from edgepose.workflows.build_int8 import calibrate_models

    from edgepose.workflows.build import BuildOptions

    o = BuildOptions(progress=False, threads=threads, det_threshold=threshold, calib_size=len(images))
    none = F.CalibrationImages([], [], images.source)
    cal = calibrate_models({"det": det, "pose": pose}, {"det": read_metadata(det), "pose": read_metadata(pose)},
                           o, images, images, none)
    laps = cal.info["seconds"]
    times = {"feeds_s": laps["det_feeds"] + laps["pose_feeds"], "det_feeds_s": laps["det_feeds"],
             "pose_feeds_s": laps["pose_feeds"], "det_stats_s": laps["det_statistics"],
             "pose_stats_s": laps["pose_statistics"], "crops": cal.info["pose_crops"]}
    return times, {role: g.stats for role, g in cal.graphs.items()}, {r: g.prepared for r, g in cal.graphs.items()}


def _calibrate_new_builtin_crops(images, det, pose, crop_det, threshold, threads) -> tuple:
    """This branch, random-weights detector: the steps of ``calibrate_models`` one by one (the
    crops are decoded from the detector's statistics pass, timed; it finds nobody, so the pose
    model calibrates on the built-in detector's crops, that pass untimed)."""
    from edgepose.backends.factory import load_runner
    from edgepose.metadata import read_metadata
    from edgepose.pipeline.detector import Detector
    from edgepose.quant.build import calibrate
    from edgepose.workflows import calibration_feeds as F
    from edgepose.workflows.pose_calibration import CropsFromOutputs, crop_feeds

    t0 = time.perf_counter()
    det_feeds, infos = F.det_inputs(images, det, read_metadata(det))
    t1 = time.perf_counter()
    runner = load_runner(det, backend="onnxruntime", providers=["CPUExecutionProvider"], threads=threads)
    own = CropsFromOutputs(images.images, infos, Detector(runner, score_threshold=threshold), read_metadata(pose))
    graphs = {"det": calibrate(det, det_feeds, threads=threads, on_outputs=own)}
    runner.close()
    t2 = time.perf_counter()
    crops = own.crops or F.detector_crops(images, crop_det, pose, score_threshold=threshold)[0]
    t3 = time.perf_counter()
    pose_feeds = crop_feeds(F._evenly(crops, len(images)), pose)
    t4 = time.perf_counter()
    graphs["pose"] = calibrate(pose, pose_feeds, threads=threads)
    t5 = time.perf_counter()
    times = {"feeds_s": (t1 - t0) + (t4 - t3), "det_feeds_s": t1 - t0, "pose_feeds_s": t4 - t3,
             "det_stats_s": t2 - t1, "pose_stats_s": t5 - t4, "crops": min(len(crops), len(images))}
    return times, {r: g.stats for r, g in graphs.items()}, {r: g.prepared for r, g in graphs.items()}


def _calibrate_old(images, det, pose, crop_det, threshold, threads) -> tuple:
    """Older code: the FP32 detector runs once more for the crops (timed: ``build`` paid it)."""
    from edgepose.metadata import read_metadata
    from edgepose.quant import calibration as C
    from edgepose.quant.int8 import prepare_fp32
    from edgepose.workflows import calibration_feeds as F

    times = {}
    t0 = time.perf_counter()
    det_feeds = F.det_feeds(images, det, read_metadata(det))
    crops, _ = F.detector_crops(images, det, pose, score_threshold=threshold)
    times["feeds_s"] = time.perf_counter() - t0
    if crop_det != det:  # random-weights detector: its crop pass is timed, the crops come from crop_det
        crops, _ = F.detector_crops(images, crop_det, pose, score_threshold=threshold)
    t0 = time.perf_counter()
    name, batch = F._input_of(pose)
    pose_feeds = F._batched(F._evenly(crops, len(images)), name, batch)
    times["feeds_s"] += time.perf_counter() - t0
    stats, prepared = {}, {}
    for role, path, feeds in (("det", det, det_feeds), ("pose", pose, pose_feeds)):
        t1 = time.perf_counter()
        prepared[role], _ = prepare_fp32(path)
        stats[role] = C.collect_statistics(prepared[role], C.FeedReader(feeds), progress=False, threads=threads)
        times[f"{role}_stats_s"] = time.perf_counter() - t1
    times["crops"] = min(len(crops), len(images))
    return times, stats, prepared


def timed_calibration(images, det, pose, threshold: float = 0.1, threads=None) -> dict:
    """Seconds per model of what ``build --int8`` does before quantizing, with this code:
    ``{"det": {"seconds", "samples", "per_s"}, "pose": {...}}`` (feeds, statistics pass,
    ranges of all four methods; det samples are images, pose samples crops)."""
    from edgepose.quant import calibration as C

    times, stats, prepared = _calibrate_new(images, det, pose, threshold, threads)
    out = {}
    for role, samples in (("det", len(images)), ("pose", times["crops"])):
        t0 = time.perf_counter()
        heads = C.head_tensors(prepared[role])
        for method in C.METHODS:
            C.compute_ranges(stats[role], method, full_range=heads)
        seconds = times[f"{role}_feeds_s"] + times[f"{role}_stats_s"] + time.perf_counter() - t0
        out[role] = {"seconds": round(seconds, 3), "samples": samples, "per_s": round(samples / seconds, 2)}
    return out


def calibration(images, det, pose, crop_det, threshold, threads) -> dict:
    from edgepose.quant import calibration as C
    from edgepose.workflows import build_int8

    if hasattr(build_int8, "calibrate_models") and crop_det != det:
        times, stats, prepared = _calibrate_new_builtin_crops(images, det, pose, crop_det, threshold, threads)
    elif hasattr(build_int8, "calibrate_models"):
        times, stats, prepared = _calibrate_new(images, det, pose, threshold, threads)
    else:
        times, stats, prepared = _calibrate_old(images, det, pose, crop_det, threshold, threads)
    for role in ("det", "pose"):
        heads = C.head_tensors(prepared[role])
        for method in C.METHODS:
            t2 = time.perf_counter()
            C.compute_ranges(stats[role], method, full_range=heads)
            times[f"{role}_{method}_s"] = time.perf_counter() - t2
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="calibration images (and pose crops)")
    parser.add_argument("--det")
    parser.add_argument("--pose")
    parser.add_argument("--crops-from-builtin", action="store_true")
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    from edgepose.workflows import calibration_feeds as F

    det, pose, builtin_det = _models(args)
    crop_det = builtin_det if args.crops_from_builtin else det
    images = F.load_calibration_images(f"synthetic:{args.images}:0", size=args.images, progress=False)
    per_image = _per_image_crops(images, crop_det, pose, args.threshold)
    for _ in range(args.repeat):
        c0 = time.process_time()
        fp32 = fp32_pass(images, det, pose, per_image, args.threads)
        c1 = time.process_time()
        cal = calibration(images, det, pose, crop_det, args.threshold, args.threads)
        cal["cpu_ratio"] = round((time.process_time() - c1) / (c1 - c0), 3)
        ranges = sum(v for k, v in cal.items() if k.endswith(tuple(f"_{m}_s" for m in
                                                                    ("entropy", "minmax", "percentile", "mse"))))
        total = cal["feeds_s"] + cal["det_stats_s"] + cal["pose_stats_s"] + ranges
        print(json.dumps({"label": args.label, "images": len(images),
                          "fp32_crops": int(sum(len(c) for c in per_image if c is not None)),
                          "fp32_pass_s": round(fp32, 3), "calib_s": round(total, 3),
                          "wall_ratio": round(total / fp32, 3),
                          **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in cal.items()}}), flush=True)


if __name__ == "__main__":
    main()
