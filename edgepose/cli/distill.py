"""`edgepose distill`: train a light scene-specific detector + pose model on a teacher's labels."""
from __future__ import annotations

import click

from edgepose.cli import main

_OPTIONS = [
    click.option("--teacher-det", metavar="MODEL", help="Teacher detector: anything `edgepose run --det` "
                 "accepts. Default (with --teacher-pose): the built-in pair (trained on synthetic people)."),
    click.option("--teacher-pose", metavar="MODEL", help="Teacher pose model (as `edgepose run --pose`)."),
    click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]), default="auto",
                 show_default=True, help="Backend of the teacher."),
    click.option("--source", metavar="VIDEO|DIR", help="Footage of the scene for the teacher to label."),
    click.option("--val-source", metavar="VIDEO|DIR", help="Other footage of the scene for validation "
                 "(default: the last 25 % of --source after a 5 % gap, with a warning)."),
    click.option("--labels", type=click.Path(dir_okay=False), metavar="LABELS.json", help="Ready-made labels "
                 "instead of a teacher: COCO keypoints annotations, or COCO results (AlphaPose / `run --json`)."),
    click.option("--images", type=click.Path(file_okay=False), metavar="DIR", help="Frames of --labels "
                 "(results' image ids are matched to files by numeric stem: 123 -> 000123.jpg)."),
    click.option("--val-labels", type=click.Path(dir_okay=False), metavar="LABELS.json",
                 help="Held-out labels (same formats)."),
    click.option("--val-images", type=click.Path(file_okay=False), metavar="DIR", help="Frames of --val-labels."),
    click.option("--out", required=True, type=click.Path(file_okay=True), metavar="DIR",
                 help="New folder: det.onnx, pose.onnx, det.pth, pose.pth, report.json."),
    click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                 help="Teacher's (and student's) minimum person score."),
    click.option("--kp-threshold", type=click.FloatRange(0, 1), default=0.2, show_default=True,
                 help="Teacher joints below this score get weight 0."),
    click.option("--label-score-threshold", type=float, default=None,
                 help="Drop results-format records scoring below this (default: keep all)."),
    click.option("--max-frames", type=click.IntRange(1), default=None, help="Use at most this many frames."),
    click.option("--student-det", default="default_det", show_default=True, help="Zoo CenterNet for the student."),
    click.option("--student-pose", default="default_pose", show_default=True, help="Zoo SPPE for the student."),
    click.option("--init", type=click.Choice(["builtin", "random"]), default="builtin", show_default=True,
                 help="Start the students from the built-in weights (synthetic people) or from scratch."),
    click.option("--det-input", metavar="HxW", help="Student detector input (default: from the people's size)."),
    click.option("--pose-input", metavar="HxW", help="Student pose input (default: from the people's size)."),
    click.option("--epochs", type=click.IntRange(1), default=3, show_default=True, help="Epochs of each student."),
    click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                 help="Weight of the teacher-heatmap term (FPD)."),
    click.option("--bench-frames", type=click.IntRange(3), default=60, show_default=True,
                 help="Validation frames timed for student and teacher."),
    click.option("--threads", type=click.IntRange(1), default=None, help="torch threads while training."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--resume", is_flag=True, help="Continue an interrupted run with the same inputs."),
    click.option("--no-progress", is_flag=True, help="No progress bars."),
]


def _with_options(func):
    for opt in reversed(_OPTIONS):
        func = opt(func)
    return func


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@_with_options
def distill(**kw):
    """Distil a light detector + pose model for one camera's scene.

    \b
    Examples:
      edgepose distill --source scene.mp4 --val-source other.mp4 --out scene/
      edgepose distill --teacher-det big_det.onnx --teacher-pose big_pose.onnx --source frames/ --out scene/
      edgepose distill --labels alphapose-results.json --images frames/ --out scene/

    The students start from the built-in models (trained on synthetic people) at input sizes
    chosen from the people's pixel size; the report gives agreement with the teacher (box AP,
    keypoint AP, PCK@0.1), student/teacher latency on ONNX Runtime, parameters and GFLOPs.
    """
    from edgepose.workflows.distill import DistillConfig, distill as run_distill

    epochs = kw.pop("epochs")
    kw["progress"] = not kw.pop("no_progress")
    cfg = DistillConfig(**kw, det_epochs=epochs, pose_epochs=epochs)
    click.echo(run_distill(cfg).format())
