"""`edgepose demo`: export the defaults, build the best precision, run a generated clip, print FPS/AP."""
from __future__ import annotations

import click

from edgepose.cli import main


@main.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False),
              help="Writes OUT/demo.mp4, OUT/results.json and OUT/demo_summary.json.")
@click.option("--precision", type=click.Choice(["auto", "int8", "fp16", "fp32"]), default="auto", show_default=True,
              help="auto: INT8 when edgepose can build it here, else FP32.")
@click.option("--frames", default=60, show_default=True, type=click.IntRange(1), help="Demo clip length.")
@click.option("--people", default=3, show_default=True, type=click.IntRange(0), help="People in the demo clip.")
@click.option("--val-images", default=100, show_default=True, type=click.IntRange(1),
              help="Synthetic validation images for AP (seed 1000).")
@click.option("--no-fp32-compare", is_flag=True, help="Skip the FP32 comparison row (and the accuracy check).")
@click.option("--max-ap-drop", type=click.FloatRange(0), default=3.0, show_default=True,
              help="Use INT8/FP16 only if box and keypoint AP stay within this many points of FP32.")
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--no-progress", is_flag=True)
def demo(out_dir, precision, frames, people, val_images, no_fp32_compare, max_ap_drop, threads, no_progress):
    """Show edgepose working end to end on generated data (nothing is downloaded).

    It uses the built-in default models, trained on synthetic people: they show the pipeline
    working but will not find real people reliably.
    """
    from edgepose.cli._defaults import say_builtin_models
    from edgepose.workflows.demo import run_demo

    say_builtin_models()
    result = run_demo(out_dir, frames=frames, people=people, val_images=val_images, precision=precision,
                       compare_fp32=not no_fp32_compare,
                       max_ap_drop=None if no_fp32_compare else max_ap_drop, threads=threads, progress=not no_progress)
    click.echo(result.format())
