"""`edgepose run`: detect people, estimate 17 keypoints, draw / save / write COCO JSON."""
from __future__ import annotations

import sys

import click

from edgepose.cli import main
from edgepose.cli._options import parse_hw
from edgepose.cli._defaults import say_builtin_models
from edgepose.errors import CheckpointError, DependencyError, UsageError
from edgepose.outputs import check_outputs

_ROLES = ("det", "pose")


def _split_role(value: str, option: str):
    """``det:VALUE`` / ``pose:VALUE`` / ``VALUE`` (both models) -> (roles, VALUE)."""
    for sep in (":", "="):
        head, found, tail = value.partition(sep)
        if found and head in _ROLES:
            return (head,), tail
    return _ROLES, value


def _parse_overrides(input_sizes, means, stds) -> dict:
    out = {role: {} for role in _ROLES}
    for raw in input_sizes:
        roles, text = _split_role(raw, "--input-size")
        size = parse_hw(text, "--input-size", example="512x512 or pose:256x192", shown=raw)
        for role in roles:
            out[role]["input_size"] = size
    for option, values, key in (("--mean", means, "mean"), ("--std", stds, "std")):
        for raw in values:
            roles, text = _split_role(raw, option)
            try:
                triple = tuple(float(v) for v in text.split(","))
            except ValueError:
                triple = ()
            if len(triple) != 3:
                raise UsageError(f"{option} {raw!r}: write three comma-separated numbers in the model's channel "
                                 f"order (after /255), e.g. det:0.408,0.447,0.470")
            for role in roles:
                out[role][key] = triple
    return out


def _default_models():
    try:
        from edgepose.models.defaults import default_model_paths
    except ImportError:
        raise UsageError("no built-in default models in this installation; pass --det DET.onnx and "
                         "--pose POSE.onnx (export them with `edgepose export`)") from None
    try:
        paths = default_model_paths()
    except (CheckpointError, DependencyError) as exc:
        raise UsageError(f"the built-in default models are unavailable ({exc}); pass --det DET.onnx and "
                         "--pose POSE.onnx instead") from None
    say_builtin_models()
    return paths


def _run_on_triton(url, det, src, loop_kw):
    """`run --triton`: the same run loop, frames sent to the server's `edgepose` model."""
    from edgepose.pipeline.run_loop import run_source
    from edgepose.serving.client import TritonPipeline

    try:
        if det is not None:
            raise UsageError("--triton runs the server's models; drop --det/--pose (put yours in the "
                             "repository with `edgepose export-triton --det D --pose P`)")
        pipe = TritonPipeline(url)
    except BaseException:
        src.close()
        raise
    try:
        summary = run_source(pipe, src, **loop_kw)
    finally:
        pipe.close()
    click.echo(summary.report())
    if summary.interrupted:
        sys.exit(130)  # Ctrl-C, as the local run: the outputs hold every processed frame


def _with_options(options):
    """Apply click ``options`` in the order listed, as the same stacked decorators would."""
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


_RUN_OPTIONS = [  # in --help order
    click.option("--det", metavar="MODEL", help="Person detector: .onnx or .engine (CenterNet / CornerNet-Squeeze); "
                 "with --backend torch a zoo name or NAME:weights.pth. Default: the built-in detector."),
    click.option("--pose", metavar="MODEL", help="Pose estimator: .onnx or .engine (FastPose / SimplePose); "
                 "with --backend torch a zoo name or NAME:weights.pth. Default: the built-in pose model."),
    click.option("--camera", type=click.IntRange(0), metavar="N", help="Read camera N (/dev/videoN)."),
    click.option("--source", metavar="FILE|DIR|URL", help="Video file, image, folder of images or rtsp/http URL."),
    click.option("--show", is_flag=True, help="Show the overlay in a window (q or Esc stops)."),
    click.option("--save", type=click.Path(dir_okay=False), metavar="OUT.mp4", help="Write the overlay video."),
    click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="OUT.json",
                 help="Write keypoints in COCO results format (readable by pycocotools COCO.loadRes). Image ids "
                 "of a folder: a numeric file stem keeps its number (000000000139.jpg -> 139); other names get "
                 "ids above the largest numeric stem, in sorted name order. Video, camera or stream: the frame number "
                 "from 1 (the ids of `edgepose data clip` annotations)."),
    click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]), default="auto",
                 show_default=True, help="auto: TensorRT for .engine (else ONNX Runtime on the sibling .onnx), "
                 "ONNX Runtime for .onnx."),
    click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                 help="Minimum detector score of a person."),
    click.option("--max-persons", type=click.IntRange(0), default=20, show_default=True,
                 help="Keep at most this many people per frame (highest scores)."),
    click.option("--flip", is_flag=True, help="AlphaPose flip test (twice the pose work)."),
    click.option("--det-mode", type=click.Choice(["fix_res", "keep_res"]), default="fix_res", show_default=True,
                 help="CenterNet input geometry; keep_res needs a detector exported with dynamic H/W."),
    click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime intra-op threads."),
    click.option("--input-size", "input_sizes", multiple=True, metavar="[det:|pose:]HxW",
                 help="Input size for a model exported without edgepose metadata (repeatable; "
                 "each side 16-4096)."),
    click.option("--mean", "means", multiple=True, metavar="[det:|pose:]M1,M2,M3",
                 help="Per-channel mean (after /255) for a model without metadata."),
    click.option("--std", "stds", multiple=True, metavar="[det:|pose:]S1,S2,S3",
                 help="Per-channel std for a model without metadata."),
    click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after this many frames."),
    click.option("--kp-threshold", type=click.FloatRange(0, 1), default=0.2, show_default=True,
                 help="Joints below this score are not drawn."),
    click.option("--no-progress", is_flag=True, help="No progress bar."),
    click.option("--overlap", is_flag=True, help="Run the detector on the next frame while the pose model works on "
                 "this one (same results; ONNX Runtime sessions get half the CPU threads each unless --threads)."),
    click.option("--triton", metavar="URL", help="Run on a Triton server (`edgepose serve`): HOST:PORT (HTTP) or "
                 "grpc://HOST:PORT; the models and their options are the server's."),
]


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@_with_options(_RUN_OPTIONS)
def run(det, pose, camera, source, show, save, json_path, backend, score_threshold, max_persons, flip, det_mode,
        threads, input_sizes, means, stds, max_frames, kp_threshold, no_progress, overlap, triton):
    """Detect people and estimate their 17 COCO keypoints on a camera, video, image folder or stream.

    Without --det/--pose it uses the built-in default models, trained on synthetic people: they
    show the pipeline working but will not find real people reliably. For real footage export
    real models (edgepose export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out
    det.onnx, likewise fastpose_res50 --weights fast_res50_256x192.pth) and pass --det/--pose.

    \b
    Examples:
      edgepose run --det det.onnx --pose pose.onnx --camera 0 --show
      edgepose run --det det.engine --pose pose.engine --source clip.mp4 --save out.mp4
      edgepose run --det det.onnx --pose pose.onnx --source val2017/ --json results.json
      edgepose run --det bare.onnx --input-size det:512x512 --pose pose.onnx --source img.jpg
      edgepose run --det det.onnx --pose pose.onnx --source clip.mp4 --overlap

    At the end it prints the per-stage latency table (mean, p50, p90, p99 in ms), the FPS and
    how many frames were read and skipped.  Ctrl-C or a stream that stops keeps what was
    processed: the JSON and the video are still written (Ctrl-C then exits 130).  Outputs
    are checked before any work; a video that does not play back is an error, and JSON that
    cannot be written goes to a named file in the temp folder.
    """
    from edgepose.data.sources import open_source

    if (camera is None) == (source is None):
        raise UsageError("pass exactly one input: --camera N or --source FILE|DIR|URL")
    if (det is None) != (pose is None):
        raise UsageError("pass both --det and --pose, or neither to use the built-in models")
    if triton and overlap:
        raise UsageError("--overlap runs the two local models side by side; with --triton the server schedules "
                         "them, so drop --overlap")
    overrides = _parse_overrides(input_sizes, means, stds)
    check_outputs({"--source": source, "--det": det, "--pose": pose}, {"--save": save, "--json": json_path})
    src = open_source(camera=camera, source=source)  # fail fast on a bad camera/file
    loop_kw = dict(show=show, save=save, json_path=json_path, progress=not no_progress, kp_threshold=kp_threshold,
                   max_frames=max_frames)
    if triton:
        return _run_on_triton(triton, det, src, loop_kw)
    runner_kw = {"threads": threads} if threads and backend in ("auto", "onnxruntime") else {}
    pipe_kw = dict(backend=backend, det_overrides=overrides["det"] or None, pose_overrides=overrides["pose"] or None,
                   runner_kw=runner_kw, score_threshold=score_threshold, max_persons=max_persons,
                   det_mode=det_mode, flip=flip, overlap=overlap)
    return _run_local(det, pose, src, pipe_kw, loop_kw)


def _run_local(det, pose, src, pipe_kw, loop_kw):
    """`run` on this machine: build the pipeline (the built-in models without --det/--pose), run
    the loop, print the latency table; Ctrl-C exits 130 after the outputs are written."""
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.pipeline.run_loop import run_source

    try:
        if det is None:
            det, pose = _default_models()
        pipe = Pipeline.from_files(det, pose, **pipe_kw)
    except BaseException:
        src.close()
        raise
    summary = run_source(pipe, src, overlap=pipe_kw["overlap"], **loop_kw)
    click.echo(summary.report())
    if summary.interrupted:
        sys.exit(130)  # Ctrl-C: the outputs above hold every processed frame
