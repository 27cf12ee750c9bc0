"""``edgepose demo``: the whole flow on a fresh machine, with nothing downloaded.

1. export the built-in default models to ONNX (:func:`edgepose.models.defaults.default_model_paths`);
2. build the best precision available (INT8 Q/DQ via :mod:`edgepose.workflows.build`, else FP32),
   kept only if its AP is within ``max_ap_drop`` points of FP32 -- the demo says which one it
   used and why;
3. generate a demo clip (moving synthetic people) and run the pipeline on it, writing
   ``OUT/demo.mp4`` (overlay) and ``OUT/results.json`` (COCO keypoint results);
4. score box AP and keypoint AP on a generated validation set (own seed);
5. print one FPS / latency / AP table (also ``OUT/demo_summary.json``).

    from edgepose.workflows.demo import run_demo
    result = run_demo("out")      # DemoResult; print(result.format())
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepose.errors import EdgeposeError, UsageError
from edgepose.progress import say

log = logging.getLogger("edgepose")

PRECISIONS = ("auto", "int8", "fp16", "fp32")


@dataclass
class DemoResult:
    """What the demo did: the precision used and why, its files, one row per precision run."""

    precision: str
    note: str
    video: str
    results: str
    clip: str
    clip_annotations: str
    val: str
    rows: list
    wall_s: float

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        return format_summary(self.to_dict())


def _say(text, progress=True):
    say(text, enabled=progress, prefix="demo")


def build_best_precision(det, pose, out_dir, precision="auto", cache_dir=None, progress=True):
    """``(precision, det_path, pose_path, note)``: INT8 when edgepose.quant can build it
    (``auto``/``int8``), FP16 when asked, otherwise the FP32 files with the reason."""
    if precision == "fp32":
        return "fp32", det, pose, "FP32 as asked"
    try:
        from edgepose.workflows.build import BuildOptions, build
    except ImportError as exc:
        if precision != "auto":
            raise UsageError(f"{precision} needs edgepose.workflows.build, which is not available ({exc}); "
                             "use --precision fp32") from None
        return "fp32", det, pose, f"INT8 unavailable (edgepose.workflows.build: {exc}); using FP32"
    want = "int8" if precision == "auto" else precision
    _say(f"building {want.upper()} models in {out_dir} ...", progress)
    options = BuildOptions(out_dir=out_dir, precision=want, det=det, pose=pose, progress=progress, measure=False,
                           benchmark=False, cache_dir=cache_dir)
    if want == "int8":
        # the demo runs on ONNX Runtime CPU: let it run the deconvolutions in INT8 too (exact rewrite)
        options.calib, options.calib_size, options.cpu_rewrite = "synthetic:32:500", 32, True
    try:
        result = build(options)
    except EdgeposeError as exc:
        if precision != "auto":
            raise
        return "fp32", det, pose, f"INT8 build failed ({exc}); using FP32"
    d, p = result.outputs.get("det"), result.outputs.get("pose")
    if not (d and p and Path(d).is_file() and Path(p).is_file()):
        if precision != "auto":
            raise UsageError(f"the {want} build wrote no det/pose ONNX files (report: {result.report_path})")
        return "fp32", det, pose, f"the {want.upper()} build produced no models; using FP32"
    return want, Path(d), Path(p), f"{want.upper()} Q/DQ ONNX built" if want == "int8" else "FP16 ONNX built"


def clip_image_ids(clip_ann) -> dict:
    """``{frame_index: image id}`` from a generated clip's COCO JSON (``generate_clip``)."""
    doc = json.loads(Path(clip_ann).read_text())
    return {int(img["frame_index"]): int(img["id"]) for img in doc["images"]}


def _run_clip(pipe, clip, save=None, json_path=None, progress=True):
    """run_source over the clip; COCO records are collected here and written atomically,
    frames without people adding none.  Image ids are the clip annotation file's own ids
    (``<clip>.json``: frame ``i`` is image ``i + 1``), so ``COCO(<clip>.json).loadRes``
    accepts the results."""
    from edgepose.data.sources import open_source
    from edgepose.io_utils import atomic_path
    from edgepose.pipeline.run_loop import run_source

    records = []
    ids = clip_image_ids(Path(clip).with_suffix(".json")) if json_path else {}

    def collect(frame_id, name, frame, result):
        if len(result):
            records.extend(result.to_coco(ids[int(frame_id)]))

    source = open_source(source=str(clip))
    try:
        summary = run_source(pipe, source, save=save, progress=progress, on_result=collect if json_path else None)
    finally:
        source.close()
    if json_path:
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(records))
        summary.json_path = str(json_path)
    return summary


def run_demo(out_dir="out", frames: int = 60, people: int = 3, size=(256, 256), val_images: int = 100,
             val_seed: int = 1000, clip_seed: int = 7, precision: str = "auto", compare_fp32: bool = True,
             max_ap_drop: float | None = 3.0, threads: int | None = None, progress: bool = True) -> DemoResult:
    """Run the demo; returns a :class:`DemoResult` (also written to ``OUT/demo_summary.json``).

    A reduced precision (INT8/FP16) is kept only when its box and keypoint AP on the
    validation set are within ``max_ap_drop`` points of FP32 (``None``: keep it anyway);
    otherwise the video and results come from FP32 and the summary says why.
    """
    from edgepose.io_utils import atomic_path
    from edgepose.models.defaults import resolve_models

    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if frames < 1 or val_images < 1 or people < 0:
        raise UsageError("--frames and --val-images must be >= 1 and --people >= 0")
    t_start = time.perf_counter()
    out = Path(out_dir)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)

    _say("exporting the default models to ONNX (first run only) ...", progress)
    det32, pose32 = resolve_models()
    prec, det, pose, note = build_best_precision(det32, pose32, out / "build", precision, cache_dir=data,
                                                 progress=progress)
    _say(f"precision: {prec.upper()} -- {note}", progress)
    clip, vdir = _demo_data(data, frames, people, size, val_images, val_seed, clip_seed, progress)

    runner_kw = {"threads": threads} if threads else {}
    configs = {prec: (det, pose)}
    if prec != "fp32" and (compare_fp32 or max_ap_drop is not None):
        configs["fp32"] = (det32, pose32)
    # 1. accuracy of every candidate (detector threshold 0.1: the whole precision/recall curve)
    aps = {name: _score_ap(d, p, vdir, runner_kw, f"{name.upper()}: scoring AP on {val_images} validation "
                           "images ...", progress) for name, (d, p) in configs.items()}
    # 2. a reduced precision is used only when it keeps the accuracy (within max_ap_drop points)
    if prec != "fp32" and max_ap_drop is not None:
        drops = {k: 100 * (aps["fp32"][k] - aps[prec][k]) for k in ("bbox_AP", "keypoints_AP")}
        if max(drops.values()) > max_ap_drop:
            note = (f"{prec.upper()} built but it loses {drops['bbox_AP']:.1f} box AP / {drops['keypoints_AP']:.1f} "
                    f"keypoint AP points against FP32 (budget {max_ap_drop:g}); using FP32")
            prec = "fp32"
            _say(f"precision: FP32 -- {note}", progress)
    order = [prec] + [n for n in configs if n != prec]
    # 3. the demo clip: overlay video + COCO results with the chosen precision, timing for all
    rows = [_clip_row(name, *configs[name], name == prec, clip, out, runner_kw, aps[name], progress)
            for name in order]
    result = DemoResult(precision=prec, note=note, video=str(out / "demo.mp4"), results=str(out / "results.json"),
                        clip=str(clip), clip_annotations=str(clip.with_suffix(".json")),
                        val=str(vdir / "annotations.json"), rows=rows, wall_s=round(time.perf_counter() - t_start, 1))
    with atomic_path(out / "demo_summary.json") as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _demo_data(data: Path, frames, people, size, val_images, val_seed, clip_seed, progress) -> tuple:
    """``(clip path, validation folder)``, generated once into ``data``."""
    from edgepose.data.synthetic import generate_clip, generate_dataset

    clip = data / f"demo_clip_{people}p_{frames}f_{size[0]}x{size[1]}.mp4"
    if not (clip.is_file() and clip.with_suffix(".json").is_file()):
        _say(f"generating a {frames}-frame clip with {people} people ...", progress)
        generate_clip(clip, frames, people, seed=clip_seed, image_size=size, progress=progress)
    vdir = data / f"val_seed{val_seed}_{val_images}_{size[0]}x{size[1]}"
    if not (vdir / "annotations.json").is_file():
        _say(f"generating {val_images} validation images (seed {val_seed}) ...", progress)
        generate_dataset(vdir, val_images, val_seed, image_size=size, max_people=4, progress=progress)
    return clip, vdir


def _score_ap(det, pose, vdir: Path, runner_kw, text, progress) -> dict:
    from edgepose.eval.dataset_eval import evaluate_pipeline
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(str(det), str(pose), backend="onnxruntime", runner_kw=runner_kw, score_threshold=0.1)
    try:
        _say(text, progress)
        metrics, _, _ = evaluate_pipeline(pipe, vdir / "annotations.json", vdir / "images", progress=progress)
    finally:
        pipe.close()
    return {k: float(v) for k, v in metrics.items()}


def _clip_row(name, det, pose, is_main, clip, out: Path, runner_kw, ap, progress) -> dict:
    """Run the pipeline of ``name`` on the clip (the used one writes the video and results)."""
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(str(det), str(pose), backend="onnxruntime", runner_kw=runner_kw)
    try:
        _say(f"{name.upper()}: running the pipeline on {clip.name} ...", progress)
        summary = _run_clip(pipe, clip, save=out / "demo.mp4" if is_main else None,
                            json_path=out / "results.json" if is_main else None, progress=progress)
    finally:
        pipe.close()
    total = summary.stats.get("total")
    return {
        "precision": name, "det": str(det), "pose": str(pose), "used": is_main,
        "fps": summary.fps, "pipeline_fps": summary.pipeline_fps,
        "latency_ms": {k: {"p50": v.p50, "p90": v.p90, "p99": v.p99} for k, v in summary.stats.items()},
        "total_ms_p50": total.p50 if total else None,
        "people_per_frame": summary.persons / max(1, summary.frames_processed),
        "frames": summary.frames_processed,
        "ap": ap,
    }


def format_summary(summary: dict) -> str:
    """The FPS / latency / AP table the demo prints, from a DemoResult's dict (demo_summary.json)."""
    head = (f"{'precision':<10} {'FPS':>7} {'pipe FPS':>9} {'total ms p50':>13} {'det ms p50':>11} "
            f"{'pose ms p50':>12} {'people/frame':>13} {'box AP':>7} {'kp AP':>7}")
    lines = [head, "-" * len(head)]
    for r in summary["rows"]:
        lat = r["latency_ms"]
        ms = lambda s: f"{lat[s]['p50']:.1f}" if s in lat else "-"  # noqa: E731
        name = r["precision"].upper() + ("*" if r.get("used") else "")
        lines.append(f"{name:<10} {r['fps']:>7.1f} {r['pipeline_fps']:>9.1f} {ms('total'):>13} "
                     f"{ms('detector'):>11} {ms('pose'):>12} {r['people_per_frame']:>13.2f} "
                     f"{100 * r['ap'].get('bbox_AP', 0):>7.1f} {100 * r['ap'].get('keypoints_AP', 0):>7.1f}")
    lines.append(f"precision used (*): {summary['precision'].upper()} ({summary['note']})")
    lines.append(f"AP: COCO box / keypoint AP in points on {summary['val']}")
    lines.append(f"video: {summary['video']}\nresults: {summary['results']}\n"
                 f"demo took {summary['wall_s']:.0f} s")
    return "\n".join(lines)
