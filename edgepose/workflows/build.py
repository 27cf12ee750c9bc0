"""``edgepose build``: FP32 detector + pose ONNX -> FP16 or INT8 ONNX files, report.json and,
where TensorRT can be used, engines.

:func:`build` takes :class:`BuildOptions` and returns a :class:`BuildResult` (``.format()``
is what the CLI prints).  INT8 (:mod:`edgepose.workflows.build_int8`):

1. read the calibration set (:mod:`edgepose.workflows.calibration_feeds`): ``calib_size``
   images plus a held-out quarter as many again, hash it;
2. detector feeds = the detector's own preprocessing (CenterNet or CornerNet) of the
   ``calib_size`` images; pose feeds =
   ``calib_size`` crops of the people the FP32 detector finds on them (as the pipeline will
   see them), or of the annotated boxes when the set is a COCO ``.json``
   (:mod:`edgepose.workflows.pose_calibration`);
3. per model, the pure ONNX -> ONNX steps of :mod:`edgepose.quant.build`: BN folding
   (optional ConvTranspose rewrite for CPU targets), one statistics pass, ranges by
   ``calib_method``, Q/DQ graph, lint;
4. with ``max_ap_drop``: per-layer sensitivity on a held-out slice of the feeds, then the
   accuracy-budget search on the eval set (:mod:`edgepose.quant.sensitivity`);
5. ``DIR/det.int8.onnx``, ``DIR/pose.int8.onnx`` and ``DIR/report.json`` (ranges summary,
   method, calibration-set SHA-256, layers kept in FP32, AP/FPS when measured, ONNX Runtime
   QLinearConv counts), with the TensorRT engines when asked -- the whole set written into a
   hidden sibling folder and swapped into place at the end, after every option and input was
   checked (:mod:`edgepose.workflows.build_checks`).

A model exported with CornerPool plugin nodes (``export --plugins on``) is built from a copy
in which each plugin node is its exact standard-op decomposition (everything above runs on
ONNX Runtime); the file written keeps the plugin nodes (:mod:`edgepose.workflows.build_plugins`).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose.progress import say
from edgepose.workflows.measure import ap_summary, drop_points, eval_set, evaluate_files, latency_entry, sample_feeds

log = logging.getLogger("edgepose")


def _say(progress, text):
    say(text, enabled=progress, prefix="build")


@dataclass
class EngineOptions:
    """TensorRT options of :func:`edgepose.workflows.build_checks.build_engines`."""

    workspace_mb: int = 2048
    dla_core: int | None = None
    pose_batch: tuple = (1, 8, 32)
    force: bool = False


@dataclass
class BuildOptions:
    """What to build.  ``det``/``pose``: FP32 ONNX files (default: the built-in models, trained
    on synthetic people).  ``calib``: calibration source (folder, video, COCO json,
    ``synthetic[:N[:SEED]]``; default ``synthetic``; a COCO .json calibrates the pose model on
    its annotated boxes; FP16 measures agreement on 8 of its images).  ``calib_size``: N images
    for the detector and N crops for the pose model.  ``max_ap_drop``: accuracy
    budget in AP points (INT8).  ``eval_ann``/``eval_images``: the eval set for AP (default:
    a synthetic validation set of ``eval_size`` images, seed 1); AP is measured when
    ``measure`` is true or a budget is given.  ``det_threshold``: detector score for the
    pose-calibration crops.  ``threads``: ORT CPU threads for timing/eval.  ``engines``:
    TensorRT options, ``None`` for no engines.  ``calib_method``: the INT8 range method, ``None``
    for the one whose model agrees best with FP32 on the held-out images (``held_out`` of the
    calibration images, never used for the statistics; they also rank layer sensitivity);
    ``min_agreement``: the task-metric AP vs FP32 (0-1) every INT8 model must
    reach, keeping at most ``max_fp32_layers`` sensitive layers in FP32 (``None``: any) to get
    there, else the build fails and writes nothing."""

    out_dir: str | Path = "build"
    precision: str = "int8"
    det: str | Path | None = None
    pose: str | Path | None = None
    calib: str | None = None
    calib_method: str | None = None  # None: the method that agrees best with FP32 on held-out images
    calib_size: int = 64
    max_ap_drop: float | None = None
    cpu_rewrite: bool = False
    eval_ann: str | Path | None = None
    eval_images: str | Path | None = None
    eval_size: int = 200
    measure: bool = False
    det_threshold: float = 0.1
    held_out: float = 0.25
    min_agreement: float = 0.5
    max_fp32_layers: int | None = None
    threads: int | None = 2
    benchmark: bool = True
    cache_dir: str | Path | None = None
    engines: EngineOptions | None = None
    progress: bool = True


@dataclass
class BuildResult:
    """What :func:`build` wrote: the ONNX files per role, report.json (``report`` is its
    content), the engines and, when none was built, why."""

    precision: str
    outputs: dict
    report_path: Path
    report: dict
    engines: list = field(default_factory=list)
    engine_note: str | None = None

    def format(self) -> str:
        """The lines ``edgepose build`` prints."""
        lines = []
        for role, path in self.outputs.items():
            lines.append(f"{role}: {path}{_model_line(self.report['models'].get(role, {}), self.precision)}")
        if "pose_crops" in self.report.get("calibration", {}):
            lines.append(_calibration_line(self.report["calibration"]))
        for role in self.outputs:
            agreement = self.report["models"].get(role, {}).get("agreement")
            if agreement:
                lines.append(_agreement_line(role, agreement))
        if "ap" in self.report:
            ap = self.report["ap"]
            lines.append("AP (box/keypoint): fp32 {:.4f}/{:.4f} -> {} {:.4f}/{:.4f}".format(
                ap["fp32"]["bbox_AP"], ap["fp32"]["keypoints_AP"], self.precision,
                ap[self.precision]["bbox_AP"], ap[self.precision]["keypoints_AP"]))
        lines.append(f"report: {self.report_path}")
        if self.engine_note:  # TensorRT or a GPU absent; a failed engine build raised instead
            lines.append(f"no TensorRT engine built: {self.engine_note}")
        lines.extend(f"engine: {engine}" for engine in self.engines)
        return "\n".join(lines)


def _model_line(entry: dict, precision: str) -> str:
    extra = ""
    if "ort_cpu_fusion" in entry:
        extra = f"  QLinearConv {entry['ort_cpu_fusion']['QLinearConv']}"
    if entry.get("fp32_nodes"):
        extra += f"  kept FP32: {len(entry['fp32_nodes'])} nodes"
    if "ort_cpu_ms" in entry:
        ms = entry["ort_cpu_ms"]
        extra += f"  ORT CPU {ms['fp32']:.2f} -> {ms[precision]:.2f} ms ({ms['speedup']:.2f}x)"
    return extra


def _calibration_line(calib: dict) -> str:
    return (f"calibration ({calib['source']}, --calib-size {calib['calib_size']}): detector on "
            f"{calib['det_images']} images, pose on {calib['pose_crops']} crops "
            f"(of {calib['pose_crops_available']}, {calib['pose_crops_from']}), "
            f"held out: {calib['held_out_images']} images")


def _agreement_line(role: str, agreement: dict) -> str:
    def ap(entry):
        value = entry["ap_vs_fp32"]
        return "n/a" if value is None else f"{value:.3f}"

    if "methods" not in agreement:  # FP16: one graph, no method to choose
        return (f"{role} agreement with FP32 ({'box' if role == 'det' else 'keypoint'} AP on "
                f"{agreement['held_out_images']} images not used to build): {ap(agreement['final'])}"
                + (f", people {agreement['final']['people_fp16']}/{agreement['final']['people_fp32']}"
                   if role == "det" else ""))
    methods = ", ".join(f"{m} {ap(e)}" for m, e in agreement["methods"].items())
    kept = agreement.get("kept_fp32_for_agreement")
    final = f" -> {ap(agreement['final'])} with {kept} layers kept in FP32" if kept else ""
    return (f"{role} agreement with FP32 ({'box' if role == 'det' else 'keypoint'} AP on "
            f"{agreement['held_out_images']} held-out images): {methods}; using {agreement['chosen']} "
            f"(by {agreement['chosen_by']}){final}")


def build(options: BuildOptions) -> BuildResult:
    """Write ``DIR/det.<precision>.onnx``, ``DIR/pose.<precision>.onnx`` and ``DIR/report.json``
    (and, with ``options.engines``, the TensorRT engines).

    Every option and input is checked before anything is written.  The set is written into a
    hidden sibling of ``DIR`` and swapped into place at the end (:func:`edgepose.outputs.staged_dir`):
    a failure or Ctrl-C leaves the previous set untouched and no partial files.  Where
    TensorRT cannot be used the result says why (``engine_note``); a real build failure raises.
    """
    from edgepose.outputs import staged_dir
    from edgepose.workflows.build_checks import check_build_args

    det_onnx, pose_onnx, metas = check_build_args(options)
    out_dir = Path(options.out_dir)
    with staged_dir(out_dir) as stage:
        report = _build_into(stage, out_dir, {"det": det_onnx, "pose": pose_onnx}, metas, options)
    report["report"] = str(out_dir / "report.json")
    return BuildResult(options.precision, dict(report["outputs"]), out_dir / "report.json", report,
                       engines=list(report.get("engines", [])), engine_note=report.get("engine_note"))


def _build_into(stage, out_dir, src, metas, o: BuildOptions) -> dict:
    """The build proper, writing into ``stage``; paths in the report are the final ones."""
    from edgepose.io_utils import atomic_path, sha256_file
    from edgepose.workflows.build_checks import build_engines, drop_stale_engines

    outs = {role: stage / f"{role}.{o.precision}.onnx" for role in src}
    report = {
        "precision": o.precision,
        "inputs": {role: {"path": str(p), "sha256": sha256_file(p)} for role, p in src.items()},
        "outputs": {role: str(out_dir / p.name) for role, p in outs.items()},
        "models": {},
    }
    work = Path(tempfile.mkdtemp(prefix="edgepose_build_"))
    cache = o.cache_dir or work
    try:
        from edgepose.workflows.build_plugins import OrtCopies

        ort = OrtCopies(src, outs, work)  # plugin nodes: ONNX Runtime runs their decomposition
        if o.precision == "fp16":
            _build_fp16(ort.src, ort.outs, metas, report, o, cache)
        else:
            from edgepose.workflows.build_int8 import build_int8

            report.update(build_int8(ort.src, ort.outs, metas, o, work))
        if (o.measure or o.max_ap_drop is not None) and "ap" not in report:
            report["ap"] = _measure_ap(ort.src, ort.outs, o, cache)
        ort.restore(report, o.precision)
        _describe_outputs(report, ort, metas, o, cache)
        if o.engines is not None:
            built, note = build_engines(report, stage, **vars(o.engines))
            report["engines"] = [str(out_dir / Path(e).name) for e in built]
            report["engine_note"] = note
        drop_stale_engines(stage, outs, report.get("engines", []))
        with atomic_path(stage / "report.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2, sort_keys=True, default=_json_default))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def _measure_ap(src, outs, o: BuildOptions, cache) -> dict:
    ann, images_dir = eval_set(o.eval_ann, o.eval_images, o.eval_size, cache)
    _say(o.progress, f"measuring AP on {ann}")
    base = evaluate_files(src["det"], src["pose"], ann, images_dir, threads=o.threads)
    new = evaluate_files(outs["det"], outs["pose"], ann, images_dir, threads=o.threads)
    return {"eval_set": str(ann), "fp32": ap_summary(base), o.precision: ap_summary(new),
            "drop_points": {k: round(v, 3) for k, v in drop_points(base, new).items()}}


def _build_fp16(src, outs, metas, report, o: BuildOptions, cache):
    from edgepose.quant.build import max_rel_err
    from edgepose.quant.fp16 import convert_fp16
    from edgepose.workflows.agreement import AgreementJudge
    from edgepose.workflows.calibration_feeds import det_feeds, load_calibration_images

    for role, path in src.items():
        _, kept = convert_fp16(path, outs[role])
        report["models"][role] = {"fp32_nodes": kept}
    # agreement with FP32 on images (--calib, else synthetic ones) in task metrics, both models
    images = load_calibration_images(o.calib or "synthetic", size=min(8, o.calib_size), progress=False,
                                     cache_dir=cache)
    feeds = det_feeds(images, src["det"], metas["det"])
    report["models"]["det"]["max_rel_err_vs_fp32"] = max_rel_err(src["det"], outs["det"], feeds)
    judge = AgreementJudge(src, images.images, o.det_threshold, o.threads)
    for role in src:
        agreement = judge(role, outs[role])
        report["models"][role]["agreement"] = {
            "images": images.source, "held_out_images": len(images), "final": _fp16_agreement(agreement),
            "metric": "bbox AP vs FP32 detections" if role == "det" else "keypoint AP (OKS) vs FP32 on the same crops"}
        if agreement.ap is None:
            log.warning("edgepose build: the FP32 detector finds nobody on the %d images from %s, so the FP16 %s "
                        "model's agreement with FP32 cannot be measured -- pass --calib images that show people",
                        len(images), images.source, role)


def _fp16_agreement(agreement) -> dict:
    entry = agreement.as_dict()
    entry["people_fp16"] = entry.pop("people_int8")  # the judge calls the candidate INT8
    return entry


def _describe_outputs(report, ort, metas, o: BuildOptions, cache):
    """Lint, hashes (of the written files), fusion counts and ORT CPU latency (of the graphs
    ONNX Runtime runs, :class:`edgepose.workflows.build_plugins.OrtCopies`) of every output."""
    from edgepose.quant.build import describe_graph

    samples = None
    for role, path in ort.final.items():
        entry = report["models"].setdefault(role, {})
        entry.update(describe_graph(path, o.precision, allow_float=entry.get("fp32_nodes", ()),
                                    ort_path=ort.outs[role]))
        if o.benchmark:
            if samples is None:
                samples = sample_feeds(ort.src, metas, cache)
            entry["ort_cpu_ms"] = latency_entry(ort.src[role], ort.outs[role], o.precision, samples[role], o.threads)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
