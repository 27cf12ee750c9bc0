"""`edgepose serve`: find tritonserver and the models' Python, start it, wait until ready."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeRequest:
    repo: str | None
    host: str = "127.0.0.1"
    http_port: int | None = 8000
    grpc_port: int | None = 8001
    server: str | None = None    # tritonserver binary (default: discovered)
    python: str | None = None    # interpreter of the python models (default: the cached env)
    timeout: float = 120.0
    log_path: str | None = None


@dataclass
class Served:
    """A ready server: ``server`` (``TritonServer``: pid, ports, stop()) and what it runs."""

    server: object
    binary: str
    python: str
    repo: str

    def format(self) -> str:
        s = self.server
        return (f"tritonserver (pid {s.pid}) ready: HTTP {s.host}:{s.http_port}, gRPC {s.host}:{s.grpc_port}\n"
                f"  repository {self.repo}\n  binary {self.binary}\n  python models run on {self.python}\n"
                f"  log {s.log_path}\n"
                f"try: edgepose run --triton {s.host}:{s.http_port} --source clip.mp4   (Ctrl-C stops the server)")


@dataclass
class SetupResult:
    binary: str
    python: str

    def format(self) -> str:
        return f"server python: {self.python}\ntritonserver: {self.binary}"


def setup(python=None, server=None) -> SetupResult:
    """Create/find the server's Python environment, then find the binary (`serve --setup`);
    a missing binary is a DependencyError saying how to get one."""
    from edgepose.serving.server import find_tritonserver
    from edgepose.serving.server_env import server_python

    py = server_python(python)
    return SetupResult(str(find_tritonserver(server).path), str(py))


@dataclass
class ServeExit:
    """How a served session ended: ``code`` None = stopped by Ctrl-C/SIGTERM, else the code
    tritonserver died with (and the end of its log)."""

    code: int | None
    log_tail: str = ""

    def format(self) -> str:
        if self.code is None:
            return "tritonserver stopped"
        return f"tritonserver exited with code {self.code}; its log ends:\n{self.log_tail}"


def serve(req: ServeRequest, on_ready=None) -> ServeExit:
    """Start the server, call ``on_ready(Served)`` once it is ready, run until it exits or a
    KeyboardInterrupt (the CLI turns SIGINT/SIGTERM into one); the server is always stopped."""
    from edgepose.errors import UsageError
    from edgepose.serving.server import find_tritonserver, start_server
    from edgepose.serving.server_env import server_python

    if not req.repo or not (Path(req.repo) / "edgepose" / "config.pbtxt").is_file():
        which = f" ({req.repo} has no edgepose/config.pbtxt)" if req.repo else ""
        raise UsageError(f"pass a model repository: edgepose serve REPO{which}; "
                         "write one with `edgepose export-triton --out REPO`")
    binary = find_tritonserver(req.server)
    python = server_python(req.python)
    server = start_server(binary, req.repo, python=python, host=req.host, http_port=req.http_port,
                          grpc_port=req.grpc_port, log_path=req.log_path)
    try:
        server.wait_ready(req.timeout)
        if on_ready is not None:
            on_ready(Served(server, str(binary.path), str(python), str(req.repo)))
        code = server.process.wait()
        return ServeExit(code, server.log_tail())
    except KeyboardInterrupt:
        return ServeExit(None)
    finally:
        server.stop()
