"""`edgepose build`: FP16/INT8 ONNX (strongly typed) and, where TensorRT exists, engines."""
from __future__ import annotations

import click

from edgepose.cli import main
from edgepose.cli._defaults import say_builtin_models


@main.command("build")
@click.option("--int8", "precision", flag_value="int8", help="INT8 Q/DQ graphs (needs calibration data).")
@click.option("--fp16", "precision", flag_value="fp16", help="FP16 graphs (FP32 inputs/outputs).")
@click.option("--det", type=click.Path(dir_okay=False), help="Detector ONNX (default: the default model).")
@click.option("--pose", type=click.Path(dir_okay=False), help="Pose ONNX (default: the default model).")
@click.option("--calib", metavar="SRC", help="Calibration set: image folder, video, COCO .json or "
                                             "synthetic[:N[:SEED]] (default: synthetic).")
@click.option("--calib-method", default="entropy", show_default=True,
              type=click.Choice(["entropy", "minmax", "percentile", "mse"]), help="How INT8 ranges are chosen.")
@click.option("--calib-size", default=64, show_default=True, type=int, help="Calibration images (evenly spaced).")
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
def build_cmd(precision, det, pose, calib, calib_method, calib_size, max_ap_drop, eval_ann, eval_images, eval_size,
              measure, cpu_rewrite, det_threshold, threads, workspace, dla, pose_batch, force, verbose, out_dir, quiet):
    """Write DIR/det.<p>.onnx, DIR/pose.<p>.onnx and DIR/report.json (+ engines with TensorRT).

    Without --det/--pose it builds the built-in default models, trained on synthetic people: they
    show the pipeline working but will not find real people reliably. For real models: edgepose
    export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx (likewise
    fastpose_res50), then --det/--pose.

    The set is written into a hidden sibling folder and moved into place at the end: a failure
    or Ctrl-C leaves the previous set as it was.  Without TensorRT or a GPU it says why no
    engine was built and exits 0; an engine build that fails exits non-zero with TensorRT's error.
    """
    from edgepose.errors import UsageError
    from edgepose.quant.build import build_precision

    if precision is None:
        raise UsageError("say which precision to build: --int8 or --fp16")
    try:
        batch_profile = tuple(int(v) for v in pose_batch.split(","))
    except ValueError:
        batch_profile = ()
    if len(batch_profile) != 3 or not 1 <= batch_profile[0] <= batch_profile[1] <= batch_profile[2]:
        raise UsageError(f"--pose-batch must be MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {pose_batch!r}")
    if verbose:
        import logging

        logging.basicConfig()
        logging.getLogger("edgepose.tensorrt").setLevel(logging.DEBUG)
    say_builtin_models(det is None, pose is None)
    engine_options = {"workspace_mb": workspace, "dla_core": dla, "pose_batch": batch_profile, "force": force}
    report = build_precision(det, pose, precision=precision, calib=calib, calib_method=calib_method,
                             max_ap_drop=max_ap_drop, out_dir=out_dir, cpu_rewrite=cpu_rewrite, progress=not quiet,
                             calib_size=calib_size, eval_ann=eval_ann, eval_images=eval_images, eval_size=eval_size,
                             measure=measure, threads=threads, det_threshold=det_threshold, engines=engine_options)
    for role, path in report["outputs"].items():
        entry = report["models"].get(role, {})
        extra = ""
        if "ort_cpu_fusion" in entry:
            extra = f"  QLinearConv {entry['ort_cpu_fusion']['QLinearConv']}"
        if entry.get("fp32_nodes"):
            extra += f"  kept FP32: {len(entry['fp32_nodes'])} nodes"
        if "ort_cpu_ms" in entry:
            ms = entry["ort_cpu_ms"]
            extra += f"  ORT CPU {ms['fp32']:.2f} -> {ms[precision]:.2f} ms ({ms['speedup']:.2f}x)"
        click.echo(f"{role}: {path}{extra}")
    if "ap" in report:
        ap = report["ap"]
        click.echo("AP (box/keypoint): fp32 {:.4f}/{:.4f} -> {} {:.4f}/{:.4f}".format(
            ap["fp32"]["bbox_AP"], ap["fp32"]["keypoints_AP"], precision,
            ap[precision]["bbox_AP"], ap[precision]["keypoints_AP"]))
    click.echo(f"report: {report['report']}")
    if report.get("engine_note"):  # TensorRT or a GPU absent; a failed engine build raised instead
        click.echo(f"no TensorRT engine built: {report['engine_note']}")
    for engine in report.get("engines", []):
        click.echo(f"engine: {engine}")
