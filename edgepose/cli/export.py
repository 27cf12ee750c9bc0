"""`edgepose export` and `edgepose models`."""
from __future__ import annotations

import click

from edgepose.cli import main
from edgepose.cli._options import parse_hw


@main.command("models")
def models_cmd():
    """List the model zoo (names for `edgepose export`)."""
    from edgepose.models import get_spec, list_models

    for name in list_models():
        spec = get_spec(name)
        h, w = spec.input_size
        click.echo(f"{name:<20} {spec.task:<10} {h}x{w:<6} {spec.description}")


@main.command("export")
@click.argument("model")
@click.option("--weights", required=True, metavar="FILE|random",
              help="Official checkpoint (.pth/.pkl) or 'random' for random init.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output ONNX path.")
@click.option("--input-size", callback=lambda ctx, param, value: _input_size(value), metavar="HxW|dynamic[:HxW]",
              help="Network input size (default: the model's, e.g. 512x512; each side 16-4096), or, for "
                   "detectors, 'dynamic' height/width (any frame size, `run --det-mode keep_res`; TensorRT "
                   "profiles up to the input of a 1080p frame) or 'dynamic:HxW' with that largest input.")
@click.option("--batch", default="1", show_default=True, metavar="N|dynamic",
              help="Fixed batch size or 'dynamic' (pose models in the pipeline want dynamic).")
@click.option("--opset", type=int, help="ONNX opset (default 17; 19 for deformable convs).")
@click.option("--num-classes", type=int, help="Detector classes (default: the model's, 80 for COCO).")
@click.option("--decode/--no-decode", default=False, show_default=True,
              help="End the graph in the decoder (CenterNet boxes / SPPE coordinates).")
@click.option("--decode-k", type=int, default=100, show_default=True,
              help="Detections kept by the in-graph decoder (<= 3840; 4096 with plugins).")
@click.option("--plugins", type=click.Choice(["auto", "off", "on"]), default="auto", show_default=True,
              help="'on' emits TensorRT plugin nodes for custom ops (corner pooling, heatmap top-k; "
                   "needs libedgepose_plugins.so in TensorRT); 'off' uses standard-op decompositions "
                   "that run everywhere; 'auto' uses plugins only when the library is built.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
def export_cmd(model, weights, out, input_size, batch, opset, num_classes, decode, decode_k, plugins,
               no_simplify):
    """Export zoo MODEL to ONNX and check it against PyTorch on ONNX Runtime.

    Prints the max absolute and relative error per output.  Beyond tolerance (1e-4 of the
    output's maximum) it exits non-zero and writes no file.

    \b
    Examples:
      edgepose export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx
      edgepose export centernet_resdcn18 --weights random --out d.onnx --input-size 128x128
      edgepose export cornernet_squeeze --weights random --out c.onnx --input-size dynamic
      edgepose export fastpose_res50 --weights fast_res50_256x192.pth --out pose.onnx --batch dynamic
    """
    from edgepose.export import torch2onnx
    from edgepose.models import get_spec

    get_spec(model)  # unknown names fail before torch is imported
    kwargs = {"num_classes": num_classes} if num_classes else {}
    dynamic_hw = False
    if isinstance(input_size, dict):
        dynamic_hw, input_size = input_size["dynamic"], None
    report = torch2onnx(model, out, weights=weights, input_size=input_size, batch=batch, opset=opset,
                        dynamic_hw=dynamic_hw,
                        decode=decode, decode_k=decode_k, plugins=plugins, simplify=not no_simplify,
                        model_kwargs=kwargs, log=lambda m: click.echo(m, err=True))
    click.echo(report.format())


def _input_size(value):
    """``--input-size``: None, ``(H, W)``, or ``{"dynamic": True | (max H, max W)}``."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "dynamic":
        return {"dynamic": True}
    if text.startswith("dynamic:"):
        return {"dynamic": parse_hw(text[len("dynamic:"):], "--input-size dynamic:", example="dynamic:1088x1920",
                                    shown=value)}
    return parse_hw(value, "--input-size", example="512x512 or dynamic")
