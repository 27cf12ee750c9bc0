"""Client side: the ``edgepose`` model on a Triton server as a drop-in for :class:`Pipeline`.

    pipe = TritonPipeline("127.0.0.1:8000")       # or grpc://127.0.0.1:8001
    result = pipe(frame_bgr)                      # PoseResult, like Pipeline(frame)

``edgepose run --triton URL`` hands this object to the same run loop (overlay, JSON, latency
table).  Needs ``tritonclient`` (``pip install 'edgepose[triton]'``), never torch.
"""
from __future__ import annotations

import time

import numpy as np

from edgepose._deps import require
from edgepose.errors import UsageError
from edgepose.serving.configs import ENTRY_MODEL
from edgepose.serving.server import ServerError

OUTPUTS = ("BOXES", "BOX_SCORES", "KEYPOINTS")


def parse_url(url: str) -> tuple:
    """``host:port`` / ``http://host:port`` / ``grpc://host:port`` -> (protocol, host:port)."""
    text = str(url).strip()
    protocol, sep, rest = text.partition("://")
    if not sep:
        protocol, rest = "http", text
    if protocol not in ("http", "grpc") or ":" not in rest or not rest.rsplit(":", 1)[1].isdigit():
        raise UsageError(f"--triton {url!r}: write HOST:PORT (HTTP, e.g. 127.0.0.1:8000) or grpc://HOST:PORT")
    return protocol, rest.rstrip("/")


def connect(url: str, timeout: float = 60.0):
    """A tritonclient ``InferenceServerClient`` for ``url`` and its module (http or grpc)."""
    protocol, address = parse_url(url)
    module = require(f"tritonclient.{protocol}", extra="pip install 'edgepose[triton]'")
    if protocol == "http":
        client = module.InferenceServerClient(address, connection_timeout=timeout, network_timeout=timeout)
    else:
        client = module.InferenceServerClient(address)
    return client, module


def _server_error(url, exc):
    return ServerError(f"Triton at {url}: {exc}. Is it running? Start one with `edgepose serve REPO`")


class TritonPipeline:
    """``frame -> PoseResult`` through the ``edgepose`` model of a Triton server."""

    def __init__(self, url: str, model: str = ENTRY_MODEL, timeout: float = 60.0):
        self.url, self.model = url, model
        self.client, self._mod = connect(url, timeout)
        try:
            ready = self.client.is_model_ready(model)
        except Exception as exc:  # tritonclient raises several types for an unreachable server
            raise _server_error(url, exc) from None
        if not ready:
            raise ServerError(f"Triton at {url} has no ready model {model!r}; serve a repository written by "
                              "`edgepose export-triton` (check the server log)")
        self.num_joints = self._joints()

    def _joints(self) -> int:
        meta = self.client.get_model_metadata(self.model)
        outputs = meta["outputs"] if isinstance(meta, dict) else [
            {"name": o.name, "shape": list(o.shape)} for o in meta.outputs]
        for out in outputs:
            if out["name"] == "KEYPOINTS":
                return int(out["shape"][1])
        raise ServerError(f"model {self.model!r} at {self.url} has no KEYPOINTS output; it is not an edgepose model")

    def infer_raw(self, frame) -> dict:
        """``{BOXES, BOX_SCORES, KEYPOINTS}`` arrays for one BGR uint8 frame."""
        mod = self._mod
        tensor = mod.InferInput("IMAGE", list(frame.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(frame))
        wanted = [mod.InferRequestedOutput(n) for n in OUTPUTS]
        try:
            response = self.client.infer(self.model, [tensor], outputs=wanted)
        except Exception as exc:  # InferenceServerException or a socket error: say where
            raise _server_error(self.url, exc) from None
        return {n: response.as_numpy(n) for n in OUTPUTS}

    def __call__(self, frame):
        from edgepose.pipeline.decode import pose_scores
        from edgepose.pipeline.pipeline import PoseResult, check_frame

        frame = check_frame(frame)
        start = time.perf_counter()
        out = self.infer_raw(frame)
        timings = {"triton": (time.perf_counter() - start) * 1e3}
        kp = np.asarray(out["KEYPOINTS"], np.float32).reshape(-1, self.num_joints, 3)
        boxes = np.asarray(out["BOXES"], np.float32).reshape(-1, 4)
        box_scores = np.asarray(out["BOX_SCORES"], np.float32).reshape(-1)
        if len(boxes) == 0:
            return PoseResult.empty(self.num_joints, timings)
        scores = np.asarray(pose_scores(kp[..., 2:3], box_scores), np.float32).reshape(-1)
        return PoseResult(boxes, box_scores, np.ascontiguousarray(kp[..., :2]),
                          np.ascontiguousarray(kp[..., 2]), scores, timings)

    def close(self):
        self.client.close()


def model_statistics(url: str, model: str) -> dict:
    """``inference_count``, ``execution_count`` and ``batch_sizes`` ({size: executions}) of one
    model, from the server's statistics (cumulative since it started)."""
    client, _ = connect(url)
    try:
        if parse_url(url)[0] == "grpc":
            stats = client.get_inference_statistics(model, as_json=True)
        else:
            stats = client.get_inference_statistics(model)
    except Exception as exc:  # unreachable server or unknown model
        raise _server_error(url, exc) from None
    finally:
        client.close()
    entry = stats["model_stats"][0]
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in entry.get("batch_stats", [])}
    return {"inference_count": int(entry.get("inference_count", 0)),
            "execution_count": int(entry.get("execution_count", 0)), "batch_sizes": sizes}
