"""Command line: `edgepose COMMAND --help`.  Only parses arguments and calls the library.

Each module in this package adds its commands to :data:`main`; they are discovered here,
so adding a command never touches this file.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from edgepose import __version__
from edgepose.errors import EdgeposeError


class _Group(click.Group):
    """Turns EdgeposeError (and a stray OSError) into one line on stderr and its exit code;
    Ctrl-C exits 130 (the shell's code for SIGINT) with one line, not click's "Aborted!" and 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeposeError as exc:
            click.echo(f"edgepose: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a file or folder the library did not name itself: still one line
            from edgepose.outputs import describe_os_error

            click.echo(f"edgepose: error: {describe_os_error(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:  # outputs are atomic: whatever was unfinished was not written
            click.echo("edgepose: interrupted (Ctrl-C)", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgepose")
def main():
    """edgepose: deploy person detectors and pose estimators on NVIDIA edge GPUs.

    Without --det/--pose, run, eval and build use the built-in default models, trained on
    synthetic people: they show the pipeline working but will not find real people reliably.
    For real footage export real models (edgepose export centernet_resdcn18 --weights
    ctdet_coco_resdcn18.pth --out det.onnx; likewise fastpose_res50 --weights
    fast_res50_256x192.pth --out pose.onnx) and pass --det det.onnx --pose pose.onnx.

    \b
    Typical flow:
      edgepose export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx
      edgepose build --int8 --out build/          # FP16/INT8 ONNX (+ TensorRT engines)
      edgepose run --camera 0 --show              # detect -> crop -> 17 keypoints
      edgepose eval --ann val.json --images val/  # COCO box AP and keypoint AP
    """


for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
