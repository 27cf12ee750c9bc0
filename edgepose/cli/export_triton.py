"""`edgepose export-triton`: a Triton Inference Server model repository for the pipeline."""
from __future__ import annotations

import click

from edgepose.cli import main


@main.command("export-triton", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--det", metavar="DET.onnx", help="Person detector ONNX. Default: the built-in detector "
              "(trained on synthetic people only).")
@click.option("--pose", metavar="POSE.onnx", help="Pose ONNX with a dynamic batch. Default: the built-in pose model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="REPO", help="Repository folder.")
@click.option("--backend", type=click.Choice(["python", "onnxruntime", "tensorrt"]), default="python",
              show_default=True, help="How det/pose run: python = onnxruntime inside the python backend (CPU, "
              "tests); onnxruntime / tensorrt = Triton's own backends (GPU servers).")
@click.option("--device", type=click.Choice(["gpu", "cpu"]), default=None,
              help="Where det/pose run. Default: gpu for onnxruntime/tensorrt, cpu for python.")
@click.option("--max-batch", type=click.IntRange(1), default=8, show_default=True,
              help="Largest pose batch (crops from all cameras together).")
@click.option("--instances", type=click.IntRange(1), default=4, show_default=True,
              help="Copies of the entry model: frames the server works on at once.")
@click.option("--queue-delay-us", type=click.IntRange(0), default=2000, show_default=True,
              help="How long pose waits to gather crops of several frames into one batch.")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Minimum detector score of a person.")
@click.option("--max-persons", type=click.IntRange(0), default=20, show_default=True,
              help="Keep at most this many people per frame.")
@click.option("--force", is_flag=True, help="Replace an existing REPO.")
def export_triton_cmd(det, pose, out, backend, device, max_batch, instances, queue_delay_us, score_threshold,
                      max_persons, force):
    """Write a Triton model repository: det, pose (dynamic batching), crop, decode and the
    entry model `edgepose` (IMAGE uint8 HxWx3 BGR -> BOXES, BOX_SCORES, KEYPOINTS).

    \b
    Examples:
      edgepose export-triton --out repo/                       # built-in models, CPU python backend
      edgepose export-triton --det det.onnx --pose pose.onnx --backend tensorrt --out repo/
    """
    from edgepose.workflows.export_triton import ExportTritonRequest, export_triton

    result = export_triton(ExportTritonRequest(out, det, pose, backend, max_batch, instances, score_threshold,
                                               max_persons, queue_delay_us, force, device))
    click.echo(result.format())
