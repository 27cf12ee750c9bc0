"""`edgepose build`: FP16/INT8 ONNX (strongly typed) and, where TensorRT exists, engines."""
from __future__ import annotations

import click

from edgepose.cli import main
from edgepose.cli._defaults import say_builtin_models


def _int8_method_options(command):
    """--calib-method / --min-agreement / --max-fp32-layers: how INT8 ranges are chosen."""
    for option in reversed([
        click.option("--calib-method", type=click.Choice(["entropy", "minmax", "percentile", "mse"]),
                     help="How INT8 ranges are chosen (default: per model, the method whose INT8 model agrees "
                          "best with FP32 on held-out calibration images)."),
        click.option("--min-agreement", default=0.5, show_default=True, type=click.FloatRange(0, 1),
                     help="AP each INT8 model must reach against FP32 on held-out images (box AP for the "
                          "detector, keypoint AP for the pose model); else layers stay FP32 or the build fails."),
        click.option("--max-fp32-layers", type=click.IntRange(0), metavar="N",
                     help="At most N sensitive layers kept in FP32 to reach --min-agreement (default: any)."),
    ]):
        command = option(command)
    return command


def _calibration_options(command):
    """--calib, the --calib-method group and --calib-size: what INT8 calibrates on."""
    command = click.option("--calib-size", default=64, show_default=True, type=int,
                           help="N images calibrate the detector and N person crops the pose model (evenly "
                                "spaced; a quarter as many images again are held out to measure agreement).")(command)
    command = _int8_method_options(command)
    return click.option("--calib", metavar="SRC", help=(
        "Calibration set: image folder, video, COCO .json or synthetic[:N[:SEED]] (default: synthetic). With a "
        "COCO .json the pose model calibrates on crops of its annotations' person boxes (ground truth, so a "
        "detector that finds nobody does not block it); otherwise on the people the FP32 detector finds."))(command)


@main.command("build")
@click.option("--int8", "precision", flag_value="int8", help="INT8 Q/DQ graphs (needs calibration data).")
@click.option("--fp16", "precision", flag_value="fp16", help="FP16 graphs (FP32 inputs/outputs).")
@click.option("--det", type=click.Path(dir_okay=False), help="Detector ONNX (default: the default model).")
@click.option("--pose", type=click.Path(dir_okay=False), help="Pose ONNX (default: the default model).")
@_calibration_options
@click.option("--max-ap-drop", type=float, metavar="X",
              help="Accuracy budget in AP points: keep the most sensitive layers in FP32 until box and "
                   "keypoint AP are each within X of FP32.")
@click.option("--eval-ann", type=click.Path(dir_okay=False), help="COCO keypoints json for AP (default: synthetic).")
@click.option("--eval-images", type=click.Path(file_okay=False), help="Images of --eval-ann.")
@click.option("--eval-size", default=200, show_default=True, type=int, help="Synthetic eval images.")
@click.option("--measure/--no-measure", default=False, show_default=True, help="Measure AP of FP32 vs the result.")
@click.option("--cpu-rewrite", is_flag=True, help="ORT CPU target: rewrite ConvTranspose (grouped too) as Conv + "
                                                  "DepthToSpace so ONNX Runtime CPU runs it in INT8, and run ReLUs "
                                                  "as INT8 lookups (TensorRT does not need it).")
@click.option("--det-threshold", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Detector score for the people whose crops calibrate the pose model.")
@click.option("--threads", default=2, show_default=True, type=int, help="ONNX Runtime CPU threads for timing/AP.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--workspace", default=2048, show_default=True, type=int, metavar="MB",
              help="TensorRT workspace (memory-pool) limit.")
@click.option("--dla", type=int, metavar="N", help="Build for DLA core N with GPU fallback (Xavier/Orin; FP16/INT8).")
@click.option("--pose-batch", default="1,8,32", show_default=True, metavar="MIN,OPT,MAX",
              help="TensorRT optimisation profile for the pose model's dynamic batch.")
@click.option("--force", is_flag=True, help="Rebuild engines even when their manifest says they are current.")
@click.option("--verbose", is_flag=True, help="Show TensorRT's full log.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def build_cmd(precision, det, pose, calib, calib_method, min_agreement, max_fp32_layers, calib_size, max_ap_drop,
              eval_ann, eval_images, eval_size, measure, cpu_rewrite, det_threshold, threads, workspace, dla,
              pose_batch, force, verbose, out_dir, quiet):
    """Write DIR/det.<p>.onnx, DIR/pose.<p>.onnx and DIR/report.json (+ engines with TensorRT).

    Without --det/--pose it builds the built-in default models, trained on synthetic people: they
    show the pipeline working but will not find real people reliably. For real models: edgepose
    export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx (likewise
    fastpose_res50), then --det/--pose.  The set is written into a hidden sibling folder and
    moved into place at the end (a failure or Ctrl-C leaves the previous set as it was); without
    TensorRT or a GPU no engine is built (exit 0), a failing engine build exits non-zero.
    """
    from edgepose.errors import UsageError
    from edgepose.workflows.build import BuildOptions, EngineOptions, build

    if precision is None:
        raise UsageError("say which precision to build: --int8 or --fp16")
    engines = EngineOptions(workspace_mb=workspace, dla_core=dla, pose_batch=_pose_batch(pose_batch), force=force)
    if verbose:
        _show_tensorrt_log()
    say_builtin_models(det is None, pose is None)
    result = build(BuildOptions(
        out_dir=out_dir, precision=precision, det=det, pose=pose, calib=calib, calib_method=calib_method,
        min_agreement=min_agreement, max_fp32_layers=max_fp32_layers, calib_size=calib_size,
        max_ap_drop=max_ap_drop, cpu_rewrite=cpu_rewrite, eval_ann=eval_ann, eval_images=eval_images,
        eval_size=eval_size, measure=measure, det_threshold=det_threshold,
        threads=threads, engines=engines, progress=not quiet))
    click.echo(result.format())


def _pose_batch(text: str) -> tuple:
    """``MIN,OPT,MAX`` -> a tuple of three batch sizes ``1 <= MIN <= OPT <= MAX``."""
    from edgepose.errors import UsageError

    try:
        batch_profile = tuple(int(v) for v in text.split(","))
    except ValueError:
        batch_profile = ()
    if len(batch_profile) != 3 or not 1 <= batch_profile[0] <= batch_profile[1] <= batch_profile[2]:
        raise UsageError(f"--pose-batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {text!r}")
    return batch_profile


def _show_tensorrt_log():
    import logging

    logging.basicConfig()
    logging.getLogger("edgepose.tensorrt").setLevel(logging.DEBUG)
