"""`edgepose serve`: run Triton Inference Server on a repository from `edgepose export-triton`."""
from __future__ import annotations

import click

from edgepose.cli import main


@main.command("serve", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("repo", required=False, type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", "http_port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              help="HTTP port.")
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True, help="gRPC port.")
@click.option("--server", metavar="PATH", help="tritonserver binary (default: PATH, /opt/tritonserver, "
              "nvidia-pytriton; or $EDGEPOSE_TRITONSERVER).")
@click.option("--python", metavar="PATH", help="Interpreter of the python models (numpy<2, onnxruntime, OpenCV; "
              "default: $EDGEPOSE_TRITON_PYTHON or a venv edgepose creates under its cache).")
@click.option("--timeout", type=click.FloatRange(1), default=120, show_default=True,
              help="Seconds to wait for the server to be ready.")
@click.option("--setup", is_flag=True, help="Only create/find the server's Python environment and the binary.")
def serve_cmd(repo, host, http_port, grpc_port, server, python, timeout, setup):
    """Start tritonserver on REPO (127.0.0.1 by default), wait until ready; Ctrl-C stops it.

    \b
    Examples:
      edgepose export-triton --out repo/ && edgepose serve repo/
      edgepose run --triton 127.0.0.1:8000 --source clip.mp4 --json out.json
    """
    from edgepose.workflows import serve as flow

    if setup:
        click.echo(flow.setup(python, server).format())
        return
    _stop_on_signals()
    result = flow.serve(flow.ServeRequest(repo, host, http_port, grpc_port, server, python, timeout),
                        on_ready=lambda served: click.echo(served.format()))
    if result.code is not None:
        raise click.ClickException(result.format())
    click.echo(result.format())


def _stop_on_signals():
    """Ctrl-C and SIGTERM (systemd, docker stop) both stop the server cleanly, even where the
    parent shell started us with SIGINT ignored."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
