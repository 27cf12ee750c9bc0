"""Find a ``tritonserver`` binary, start it on 127.0.0.1 with the right environment, stop it.

    binary = find_tritonserver()                  # TritonBinary or DependencyError
    server = start_server(binary, "repo/", python=server_python())
    server.wait_ready(timeout=60)
    ...
    server.stop()                                 # SIGINT, then SIGKILL after a grace period

Where a binary is looked for, in order: ``explicit`` / ``$EDGEPOSE_TRITONSERVER``,
``tritonserver`` on ``PATH``, ``/opt/tritonserver/bin/tritonserver`` (the NGC image), the one
inside an installed ``nvidia-pytriton`` (this interpreter's packages, or
``<cache>/triton/server`` where ``make triton`` puts it).  A pytriton binary brings only the
python backend: a backend folder is assembled for the python version of the models'
interpreter, and ``LD_LIBRARY_PATH`` gets pytriton's libraries and that interpreter's libpython.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgepose.errors import DependencyError, EdgeposeError, UsageError

log = logging.getLogger("edgepose")

HOW_TO_GET = ("get one: on a GPU server run inside the NGC image nvcr.io/nvidia/tritonserver:<yy.mm>-py3; "
              "for CPU trials `make triton` (pip install --no-deps --target ~/.cache/edgepose/triton/server "
              "nvidia-pytriton==0.7.0), or point $EDGEPOSE_TRITONSERVER at a tritonserver binary")


class ServerError(EdgeposeError):
    """tritonserver did not start, died, or did not become ready."""


@dataclass(frozen=True)
class TritonBinary:
    """``path`` of tritonserver; ``pytriton_root``: its ``pytriton/tritonserver`` folder when
    it came from nvidia-pytriton (python backend only, libraries beside it)."""

    path: Path
    pytriton_root: Path | None = None

    @property
    def libs(self) -> Path | None:
        if self.pytriton_root is None:
            return None
        return self.pytriton_root.parents[1] / "nvidia_pytriton.libs"


def _pytriton_roots(cache):
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        yield Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    yield Path(cache) / "triton" / "server" / "pytriton" / "tritonserver"


def find_tritonserver(explicit=None, cache=None) -> TritonBinary:
    """The first tritonserver found (see the module docstring), or DependencyError."""
    from edgepose.models.defaults import cache_dir

    explicit = explicit or os.environ.get("EDGEPOSE_TRITONSERVER")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DependencyError(f"tritonserver {path} is not an executable file; {HOW_TO_GET}")
        root = path.parents[1] if (path.parents[1] / "python_backend_stubs").is_dir() else None
        return TritonBinary(path, root)
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonBinary(Path(on_path))
    ngc = Path("/opt/tritonserver/bin/tritonserver")
    if ngc.is_file():
        return TritonBinary(ngc)
    for root in _pytriton_roots(cache_dir(cache)):
        binary = root / "bin" / "tritonserver"
        if binary.is_file():
            return TritonBinary(binary, root)
    raise DependencyError(f"no tritonserver found (PATH, /opt/tritonserver, nvidia-pytriton); {HOW_TO_GET}")


def python_info(python) -> dict:
    """Version ``X.Y``, libpython folder and bin folder of an interpreter (run, not imported)."""
    code = ("import sys, sysconfig, json; print(json.dumps({'version': '%d.%d' % sys.version_info[:2], "
            "'libdir': sysconfig.get_config_var('LIBDIR'), 'bin': sys.prefix + '/bin'}))")
    import json

    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise DependencyError(f"cannot run the server's python {python}: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def backend_dir(binary: TritonBinary, py_version: str, cache) -> Path:
    """``--backend-directory``: the NGC layout's own, or one assembled for a pytriton binary."""
    if binary.pytriton_root is None:
        return binary.path.parents[1] / "backends"
    root = binary.pytriton_root
    stub = root / "python_backend_stubs" / py_version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise DependencyError(f"nvidia-pytriton has no python backend stub for Python {py_version} (has {have}); "
                              "give the server a python of one of those versions with --python")
    out = Path(cache) / "triton" / "backends" / py_version / "python"
    out.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        link = out / src.name
        if not (link.is_symlink() and link.resolve() == src.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(src)
    return out.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TritonServer:
    """A running tritonserver process (``pid``), its HTTP/gRPC ports and log file."""

    process: subprocess.Popen
    host: str
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"{self.host}:{self.http_port}"

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def is_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode} before it was ready; "
                                  f"its log ({self.log_path}) ends:\n{self.log_tail()}")
            if self.is_ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGINT (Triton unloads models and exits), SIGKILL after ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver (pid %d) did not stop in %.0f s; killing it", self.pid, grace)
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def _die_with_parent():
    """In the child before exec (Linux): SIGINT when the process that started us dies, so a
    killed `edgepose serve` or test session never leaves a server behind."""
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGINT))
    except (OSError, AttributeError):
        pass


def server_command(binary: TritonBinary, repo, backends: Path, host: str, http_port: int, grpc_port: int,
                   cache) -> list:
    cmd = [str(binary.path), f"--model-repository={Path(repo).resolve()}", f"--backend-directory={backends}",
           f"--http-address={host}", f"--http-port={http_port}", f"--grpc-address={host}",
           f"--grpc-port={grpc_port}", "--allow-metrics=false", "--allow-gpu-metrics=false",
           "--disable-auto-complete-config", "--exit-timeout-secs=5"]
    if binary.pytriton_root is not None:
        cache_dir = Path(cache) / "triton" / "caches"
        cache_dir.mkdir(parents=True, exist_ok=True)
        cmd.append(f"--cache-directory={cache_dir}")
    return cmd


def start_server(binary: TritonBinary, repo, python=None, host: str = "127.0.0.1", http_port: int | None = None,
                 grpc_port: int | None = None, log_path=None, cache=None) -> TritonServer:
    """Start tritonserver on ``repo``; ``python``: interpreter for the python backend models
    (first on PATH; needs numpy<2, onnxruntime, OpenCV).  Returns before it is ready."""
    from edgepose.models.defaults import cache_dir

    cache = cache_dir(cache)
    repo = Path(repo)
    if not (repo / "edgepose" / "config.pbtxt").is_file():
        raise UsageError(f"{repo} is not an edgepose model repository (no edgepose/config.pbtxt); "
                         "write one with `edgepose export-triton --out REPO`")
    env = dict(os.environ)
    backends = binary.path.parents[1] / "backends"
    if python is not None:
        info = python_info(python)
        env["PATH"] = info["bin"] + os.pathsep + env.get("PATH", "")
        libs = [str(p) for p in (binary.libs, info["libdir"]) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        backends = backend_dir(binary, info["version"], cache)
    http_port = http_port or free_port()
    grpc_port = grpc_port or free_port()
    log_path = Path(log_path) if log_path else cache / "triton" / f"server-{http_port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = server_command(binary, repo, backends, host, http_port, grpc_port, cache)
    log.info("starting %s", " ".join(cmd))
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    return TritonServer(process, host, http_port, grpc_port, log_path)
