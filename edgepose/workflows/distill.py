"""`edgepose distill`: a light detector + SPPE for one scene, trained on a teacher's labels.

    result = distill(DistillConfig(out="scene/", source="scene.mp4"))   # teacher: built-in pair
    result = distill(DistillConfig(out="scene/", labels="alphapose.json", images="frames/"))
    print(result.format())

Flow: pseudo-labels (the teacher run over the footage with its own threshold, or ready-made
labels) -> held-out validation (``val_source``/``val_labels``, else the last 25 % of the one
video after a 5 % gap, with a warning) -> student input sizes from the people's pixel sizes ->
student detector (CenterNet loss) and SPPE (FPD heatmap distillation when the teacher is an
SPPE we run) -> ONNX export -> agreement with the teacher and ORT latency on the validation
frames -> ``report.json``.

Outputs are one transaction: everything is made in the hidden sibling ``.<out>.partial/``
and moved to ``out`` at the end; a failed or interrupted run leaves ``out`` untouched and the
partial folder for ``resume=True`` (labels and finished epochs are reused).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepose.errors import SourceError, UsageError
from edgepose.workflows import distill_steps as steps

log = logging.getLogger("edgepose")

SAME_VIDEO_WARNING = ("validation is the last 25 % of the training video (after a 5 % gap): same-video "
                      "validation overestimates how well the student generalises; pass --val-source with "
                      "other footage of the scene")
_INPUT_KEYS = ("teacher_det", "teacher_pose", "source", "val_source", "labels", "images", "val_labels",
               "val_images", "score_threshold", "kp_threshold", "label_score_threshold", "max_frames")


@dataclass
class DistillConfig:
    """Inputs of :func:`distill`.  Teacher: ``teacher_det``/``teacher_pose`` (anything
    `edgepose run` accepts; both None = the built-in pair) with ``source``, or ``labels``
    (+ ``images``).  Epochs/batches default to a first try of ~500 frames in < 20 min on 2 cores."""

    out: str
    teacher_det: str | None = None
    teacher_pose: str | None = None
    backend: str = "auto"
    source: str | None = None
    val_source: str | None = None
    labels: str | None = None
    images: str | None = None
    val_labels: str | None = None
    val_images: str | None = None
    score_threshold: float = 0.3
    kp_threshold: float = 0.2
    label_score_threshold: float | None = None
    max_frames: int | None = None
    student_det: str = "default_det"
    student_pose: str = "default_pose"
    init: str = "builtin"
    det_input: str | None = None
    pose_input: str | None = None
    min_person_px: float = 32.0
    det_epochs: int = 3
    pose_epochs: int = 3
    det_batch: int = 8
    pose_batch: int = 32
    lr: float = 5e-4
    alpha: float = 0.5
    max_steps: int | None = None
    bench_frames: int = 60
    threads: int | None = None
    seed: int = 0
    resume: bool = False
    progress: bool = True


@dataclass
class DistillResult:
    out: Path
    report: dict = field(default_factory=dict)

    def format(self) -> str:
        r = self.report
        a, lat = r.get("agreement", {}), r.get("latency", {})
        lines = [f"distilled student in {r['seconds']['total'] / 60:.1f} min -> {self.out}",
                 f"  footage: {r['footage']['train_frames']} train / {r['footage']['val_frames']} val frames "
                 f"({r['footage']['validation']})",
                 f"  student: det {'x'.join(map(str, r['student']['det']['input_size']))}, "
                 f"pose {'x'.join(map(str, r['student']['pose']['input_size']))}",
                 f"  agreement with the teacher: box AP {a.get('bbox_AP', float('nan')):.3f}, keypoint AP "
                 f"{a.get('keypoints_AP', float('nan')):.3f}, PCK@0.1 {a.get('pck@0.1', float('nan')):.3f}"]
        s = lat.get("student", {})
        line = f"  ORT latency: student {s.get('mean_ms')} ms/frame ({s.get('fps')} FPS)"
        if "teacher" in lat:
            line += f", teacher {lat['teacher']['mean_ms']} ms ({lat['teacher']['fps']} FPS), x{lat['speedup']}"
        lines.append(line)
        lines += [f"  warning: {w}" for w in r.get("warnings", [])]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- folders
def _work_dir(cfg) -> Path:
    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists and is not empty; choose a new --out or delete it")
    work = out.parent / f".{out.name}.partial"
    inputs = {k: getattr(cfg, k) for k in _INPUT_KEYS}
    state = work / "inputs.json"
    if work.exists() and cfg.resume and state.is_file():
        if json.loads(state.read_text()) != inputs:
            raise UsageError(f"{work} was started with other inputs; drop --resume to start again")
        return work
    if cfg.resume:
        log.warning("edgepose: warning: nothing to resume in %s; starting from the beginning", work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    steps.write_json(state, inputs)
    return work


def _commit(work: Path, out: Path):
    """Drop the working files and move the finished set into place.  Labels of frames the
    teacher saw keep only the frame's file name (``<split>/NNNNNN.jpg``: frame index NNNNNN)."""
    frames = str((work / "frames").resolve())
    for name in ("labels_train.json", "labels_val.json"):
        doc = json.loads((work / name).read_text())
        for img in doc["images"]:
            if img["file_name"].startswith(frames):
                img["file_name"] = str(Path(img["file_name"]).relative_to(frames))
        steps.write_json(work / name, doc)
    shutil.rmtree(work / "frames", ignore_errors=True)
    for extra in list(work.glob("*.resume")) + list(work.glob("*.train.json")) + [work / "inputs.json",
                                                                                  work / "labels.json"]:
        extra.unlink(missing_ok=True)
    if out.is_dir():
        out.rmdir()  # empty (checked at the start)
    os.replace(work, out)


# ----------------------------------------------------------------------------- labels
def _open_teacher(cfg):
    from edgepose.pipeline.pipeline import Pipeline

    det, pose = cfg.teacher_det, cfg.teacher_pose
    if (det is None) != (pose is None):
        raise UsageError("pass both --teacher-det and --teacher-pose, or neither to use the built-in pair")
    if det is None:
        from edgepose.models.defaults import default_model_paths

        det, pose = default_model_paths()
    pipe = Pipeline.from_files(det, pose, backend=cfg.backend, score_threshold=cfg.score_threshold)
    return pipe, {"det": str(det), "pose": str(pose)}


def _teacher_labels(cfg, teacher, work, warnings):
    from edgepose.data.sources import open_source
    from edgepose.train import distill_data as dd

    if cfg.source is None:
        raise UsageError("pass --source SCENE.mp4|DIR for the teacher to label (or --labels FILE.json)")
    if cfg.val_source is not None and Path(cfg.val_source).resolve() == Path(cfg.source).resolve():
        raise SourceError("--val-source is the training footage itself; pass other footage of the scene, or "
                          "leave it out to hold back the end of the video")
    train, train_hash = dd.label_frames(teacher, open_source(source=cfg.source), work / "frames" / "train",
                                        cfg.kp_threshold, cfg.max_frames, cfg.progress, "teacher (train)")
    if dd.people_count(train) == 0:
        raise SourceError(f"the teacher found nobody in the {len(train['images'])} frames of {cfg.source} (score "
                          f"threshold {cfg.score_threshold}); lower --score-threshold or check the teacher models")
    if cfg.val_source is None:
        warnings.append(SAME_VIDEO_WARNING)
        train, val = dd.split_tail(train)
        return train, val, "last 25 % of the training video after a 5 % gap"
    val, val_hash = dd.label_frames(teacher, open_source(source=cfg.val_source), work / "frames" / "val",
                                    cfg.kp_threshold, cfg.max_frames, cfg.progress, "teacher (val)")
    dd.check_no_overlap(train_hash, val_hash)
    return train, val, "separate footage"


def _file_labels(cfg, warnings):
    from edgepose.train import distill_data as dd

    train = dd.load_labels(cfg.labels, cfg.images, cfg.kp_threshold, cfg.label_score_threshold)
    if cfg.val_labels is None:
        warnings.append(SAME_VIDEO_WARNING.replace("--val-source", "--val-labels/--val-images"))
        train, val = dd.split_tail(train)
        return train, val, "last 25 % of the labelled frames (by id) after a 5 % gap"
    val = dd.load_labels(cfg.val_labels, cfg.val_images or cfg.images, cfg.kp_threshold, cfg.label_score_threshold)
    dd.check_no_overlap(dd.image_hashes(train), dd.image_hashes(val),
                        [i["file_name"] for i in train["images"]], [i["file_name"] for i in val["images"]])
    return train, val, "separate labelled frames"


def _labels(cfg, teacher, work, warnings):
    """``(train_doc, val_doc, how)``, cached in the work folder for --resume."""
    cached = work / "labels.json"
    if cached.is_file():
        saved = json.loads(cached.read_text())
        warnings.extend(saved["warnings"])
        return saved["train"], saved["val"], saved["how"]
    if cfg.labels is not None:
        train, val, how = _file_labels(cfg, warnings)
    else:
        train, val, how = _teacher_labels(cfg, teacher, work, warnings)
    if not val["annotations"]:
        warnings.append("the teacher labels nobody in the validation frames; agreement AP is undefined (-1)")
    steps.write_json(cached, {"train": train, "val": val, "how": how, "warnings": list(warnings)})
    return train, val, how


# ----------------------------------------------------------------------------- flow
def _sizes(cfg, train):
    from edgepose.train import distill_data as dd
    from edgepose.train.det import parse_size

    heights = [a["bbox"][3] for a in train["annotations"]]
    first = train["images"][0]
    frame_hw = (first.get("height"), first.get("width"))
    if None in frame_hw:
        import cv2

        frame_hw = cv2.imread(first["file_name"]).shape[:2]
    det = parse_size(cfg.det_input, None) if cfg.det_input else dd.choose_det_input(frame_hw, heights,
                                                                                    cfg.min_person_px)
    pose = parse_size(cfg.pose_input, None) if cfg.pose_input else dd.choose_pose_input(heights)
    return tuple(frame_hw), det, pose


def _check_inputs(cfg):
    if (cfg.labels is None) == (cfg.source is None):
        raise UsageError("pass either --source (the teacher labels the footage) or --labels FILE.json")
    if cfg.labels is not None and (cfg.teacher_det or cfg.teacher_pose or cfg.val_source):
        raise UsageError("--labels replaces the teacher: drop --teacher-det/--teacher-pose/--val-source "
                         "(use --val-labels/--val-images for held-out labels)")
    if cfg.source is not None and (cfg.val_labels or cfg.images):
        raise UsageError("--val-labels/--images go with --labels; with --source use --val-source")
    if cfg.init not in ("builtin", "random"):
        raise UsageError(f"--init must be builtin or random, got {cfg.init!r}")


def distill(cfg: DistillConfig) -> DistillResult:
    """Run the whole flow; returns the report (also written to ``out/report.json``)."""
    _check_inputs(cfg)
    t_start, cpu_start, seconds, warnings = time.time(), time.process_time(), {}, []
    work = _work_dir(cfg)
    teacher, teacher_files = (None, {}) if cfg.labels else _open_teacher(cfg)
    try:
        t0 = time.time()
        train, val, how = _labels(cfg, teacher, work, warnings)
        seconds["labels"] = round(time.time() - t0, 1)
        for name, doc in (("train", train), ("val", val)):
            steps.write_json(work / f"labels_{name}.json", doc)
        frame_hw, det_size, pose_size = _sizes(cfg, train)
        t0 = time.time()
        det_model, det_meta, det_info = steps.train_student_det(cfg, work / "labels_train.json", det_size,
                                                                work / "det.pth")
        seconds["train_det"] = round(time.time() - t0, 1)
        t0 = time.time()
        pose_model, pose_meta, pose_info = steps.train_student_pose(
            cfg, work / "labels_train.json", pose_size, work / "pose.pth",
            teacher.pose if teacher is not None else None)
        seconds["train_pose"] = round(time.time() - t0, 1)
        report = _finish(cfg, work, teacher, teacher_files, (det_model, det_meta, det_info),
                         (pose_model, pose_meta, pose_info), (train, val, how, frame_hw), seconds)
    finally:
        if teacher is not None:
            teacher.close()
    report["warnings"] = warnings
    seconds["total"] = round(time.time() - t_start, 1)
    seconds["cpu_total"] = round(time.process_time() - cpu_start, 1)  # all threads; wall depends on load
    report["seconds"] = seconds
    for w in warnings:
        log.warning("edgepose: warning: %s", w)
    steps.write_json(work / "report.json", report)
    _commit(work, Path(cfg.out))
    return DistillResult(Path(cfg.out), report)


def _finish(cfg, work, teacher, teacher_files, det, pose, data, seconds):
    """Export, measure and assemble the report (everything but the timings and warnings)."""
    from edgepose.eval.agreement import agreement
    from edgepose.pipeline.pipeline import Pipeline

    (det_model, det_meta, det_info), (pose_model, pose_meta, pose_info) = det, pose
    train, val, how, frame_hw = data
    t0 = time.time()
    steps.export_student(det_model, det_meta, work / "det.onnx", 1)
    steps.export_student(pose_model, pose_meta, work / "pose.onnx", "dynamic")
    seconds["export"] = round(time.time() - t0, 1)
    t0 = time.time()
    student = Pipeline.from_files(str(work / "det.onnx"), str(work / "pose.onnx"), backend="onnxruntime",
                                  score_threshold=cfg.score_threshold)
    try:
        results, latency = steps.measure(student, teacher, val, cfg.bench_frames, cfg.progress)
    finally:
        student.close()
    agree = agreement(val, results) if val["annotations"] else {}
    seconds["measure"] = round(time.time() - t0, 1)
    return {
        "teacher": teacher_files or {"labels": cfg.labels, "val_labels": cfg.val_labels},
        "footage": {"train_frames": len(train["images"]), "val_frames": len(val["images"]),
                    "train_people": len(train["annotations"]), "val_people": len(val["annotations"]),
                    "frame_size": list(frame_hw), "validation": how},
        "student": {"det": det_info, "pose": pose_info},
        "agreement": agree,
        "agreement_note": "teacher labels as ground truth; keypoint OKS area = teacher box area",
        "latency": latency,
        "latency_note": "ONNX Runtime (CPU) per-frame wall clock, detector + pose, same run",
        "cost": steps.costs(det_model, det_meta, pose_model, pose_meta, teacher_files),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
    }
