"""The pipeline on a REAL Triton Inference Server (tritonserver 2.51 from nvidia-pytriton, python
backend; `make triton` installs it).  One server per session on 127.0.0.1, stopped by PID.

Reference: the local ``Pipeline.from_files`` on the same ONNX files (built-in default models,
trained on synthetic people).  Tolerance 1e-3 px / 1e-4 score: the server runs the same
edgepose NumPy code, onnxruntime and OpenCV build.
"""
import threading

import numpy as np
import pytest

from edgepose.errors import DependencyError
from helpers.optional import torch_or_skip

torch_or_skip()  # exporting the default models to ONNX (once, cached)
import tritonclient.http as http  # noqa: E402  (a test dependency: pip install -e '.[triton]', make triton)

CONCURRENT = 8
REQUEST_TIMEOUT_S = 60


@pytest.fixture(scope="session")
def triton(tmp_path_factory):
    from edgepose.models.defaults import default_model_paths
    from edgepose.serving.repository import write_repository
    from edgepose.serving.server import find_tritonserver, start_server
    from edgepose.serving.server_env import server_python

    try:
        binary = find_tritonserver()
    except DependencyError as exc:  # the only skip: no binary on this machine at all
        pytest.skip(f"no tritonserver binary ({exc})")
    det, pose = default_model_paths()
    root = tmp_path_factory.mktemp("triton")
    # 4 entry instances work on 4 frames at once; pose waits up to 20 ms to batch their crops
    write_repository(det, pose, root / "repo", instances=4, queue_delay_us=20000)
    server = start_server(binary, root / "repo", python=server_python(), host="127.0.0.1",
                          log_path=root / "server.log")
    try:
        server.wait_ready(timeout=180)
        yield {"server": server, "url": server.url, "det": det, "pose": pose, "root": root}
    finally:
        code = server.stop()
        assert server.process.poll() is not None, f"tritonserver pid {server.pid} still running"
        assert code is not None


@pytest.fixture(scope="session")
def local(triton):
    from edgepose.pipeline.pipeline import Pipeline

    return Pipeline.from_files(triton["det"], triton["pose"])


@pytest.fixture(scope="session")
def clip_frames(tmp_path_factory):
    from edgepose.data.sources import open_source
    from edgepose.data.synthetic import generate_clip

    video, _ = generate_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", num_frames=6, num_people=3, seed=11)
    src = open_source(source=str(video))
    try:
        return [frame for _, frame, _ in src]
    finally:
        src.close()


def _client(url):
    return http.InferenceServerClient(url, network_timeout=REQUEST_TIMEOUT_S, connection_timeout=REQUEST_TIMEOUT_S)


def _infer(client, image, dtype="UINT8"):
    tensor = http.InferInput("IMAGE", list(image.shape), dtype)
    tensor.set_data_from_numpy(image)
    return client.infer("edgepose", [tensor])


def test_server_matches_local_pipeline(triton, local, clip_frames):
    from edgepose.serving.client import TritonPipeline

    remote = TritonPipeline(triton["url"])
    people = 0
    try:
        for frame in clip_frames:
            want, got = local(frame), remote(frame)
            assert len(got) == len(want)
            people += len(want)
            np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
            np.testing.assert_allclose(got.box_scores, want.box_scores, atol=1e-4)
            np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-3)
            np.testing.assert_allclose(got.keypoint_scores, want.keypoint_scores, atol=1e-4)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-3)
    finally:
        remote.close()
    assert people >= len(clip_frames), "the clip should show people in most frames"


def test_concurrent_frames_share_pose_batches(triton, local, clip_frames):
    from edgepose.serving.client import model_statistics

    frames = [clip_frames[i % len(clip_frames)] for i in range(CONCURRENT)]
    crops = sum(len(local(f)) for f in frames)
    before = model_statistics(triton["url"], "pose")
    barrier = threading.Barrier(CONCURRENT)
    errors, counts = [], []

    def camera(frame):
        client = _client(triton["url"])
        try:
            barrier.wait(timeout=REQUEST_TIMEOUT_S)
            counts.append(len(_infer(client, frame).as_numpy("BOXES")))
        except Exception as exc:  # collected and reported by the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=camera, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REQUEST_TIMEOUT_S * 2)
    assert not errors, errors
    after = model_statistics(triton["url"], "pose")
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert sum(counts) == crops and inferences == crops  # every crop reached pose once
    assert executions < inferences, f"{inferences} crops in {executions} pose executions: no batching"


def test_frame_without_people_returns_empty_outputs(triton, local):
    frame = np.full((240, 320, 3), 90, np.uint8)
    assert len(local(frame)) == 0  # the reference agrees there is nobody
    client = _client(triton["url"])
    try:
        out = _infer(client, frame)
    finally:
        client.close()
    assert out.as_numpy("BOXES").shape == (0, 4)
    assert out.as_numpy("BOX_SCORES").shape == (0,)
    assert out.as_numpy("KEYPOINTS").shape == (0, 17, 3)


@pytest.mark.parametrize("image, dtype", [
    (np.zeros((64, 64, 3), np.float32), "FP32"),     # wrong dtype
    (np.zeros((64, 64), np.uint8), "UINT8"),         # wrong rank
    (np.zeros((64, 64, 4), np.uint8), "UINT8"),      # wrong channels
    (np.zeros((0, 0, 3), np.uint8), "UINT8"),        # empty frame: the model's own check
])
def test_malformed_request_gets_error_and_server_lives(triton, clip_frames, image, dtype):
    from tritonclient.utils import InferenceServerException

    client = _client(triton["url"])
    try:
        with pytest.raises(InferenceServerException):
            _infer(client, image, dtype)
        assert triton["server"].process.poll() is None and client.is_server_ready()
        assert _infer(client, clip_frames[0]).as_numpy("KEYPOINTS").shape[1:] == (17, 3)
    finally:
        client.close()


def test_cli_run_on_triton_writes_json(triton, tmp_path, clip_frames):
    import json
    import subprocess
    import sys

    import cv2

    for i, frame in enumerate(clip_frames[:2]):
        cv2.imwrite(str(tmp_path / f"{i + 1}.png"), frame)
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "edgepose", "run", "--triton", triton["url"], "--source",
                           str(tmp_path), "--json", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "triton" in proc.stdout and "2 processed" in proc.stdout
    records = json.loads(out.read_text())
    assert records and all(len(r["keypoints"]) == 51 for r in records)


def test_grpc_client_gives_the_http_results(triton, clip_frames):
    from edgepose.serving.client import TritonPipeline, model_statistics

    grpc_url = f"grpc://127.0.0.1:{triton['server'].grpc_port}"
    via_http, via_grpc = TritonPipeline(triton["url"]), TritonPipeline(grpc_url)
    try:
        a, b = via_http(clip_frames[1]), via_grpc(clip_frames[1])
    finally:
        via_http.close()
        via_grpc.close()
    assert len(a) > 0
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert model_statistics(grpc_url, "pose") == model_statistics(triton["url"], "pose")


def test_cli_serve_starts_and_stops_on_ctrl_c(triton):
    """`edgepose serve` as users run it: ready line, then SIGINT stops tritonserver (by PID)."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from edgepose.serving.server import free_port

    http_port, grpc_port = free_port(), free_port()
    cli = subprocess.Popen([sys.executable, "-m", "edgepose", "serve", str(triton["root"] / "repo"),
                            "--port", str(http_port), "--grpc-port", str(grpc_port), "--timeout", "150"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = None
    try:
        first = cli.stdout.readline()  # blocks until ready (or the error line)
        found = re.search(r"tritonserver \(pid (\d+)\) ready: HTTP 127\.0\.0\.1:(\d+)", first)
        assert found, first + cli.stdout.read()
        pid, port = int(found.group(1)), int(found.group(2))
        assert port == http_port
        client = _client(f"127.0.0.1:{http_port}")
        assert client.is_model_ready("edgepose")
        client.close()
        cli.send_signal(signal.SIGINT)
        assert cli.wait(60) == 0
        assert "tritonserver stopped" in cli.stdout.read()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(10)
        alive = pid is not None and _wait_gone(pid, 30)
        if alive:  # never leave a server behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    assert not alive, f"tritonserver pid {pid} still alive after edgepose serve stopped"


def _wait_gone(pid, seconds) -> bool:
    """True when ``pid`` is still alive after ``seconds``."""
    import os
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True
