#!/usr/bin/env python
"""N cameras against one Triton server: frames/s, latency, and the pose model's batch sizes.

    python benchmarks/triton_bench.py --streams 1 2 4 8            # starts its own server
    python benchmarks/triton_bench.py --url 127.0.0.1:8000 --streams 8 --frames 100

Each stream is a thread with its own HTTP client sending the frames of its own synthetic clip
(generated people, different seed per stream) one after the other, as a camera would: the
next frame goes when the previous answer came back.  Reported per N: frames/s over all
streams, p50/p90/p99 request latency (ms), and from the server's statistics the pose model's
crops (inference_count), executions, and how many executions ran at each batch size.

Without ``--url`` it writes a repository of the built-in default models (trained on synthetic
people only) with ``edgepose export-triton`` settings ``--instances``/``--queue-delay-us`` and
serves it on 127.0.0.1 for the run.  Writes ``triton_bench.json`` and ``triton_bench.md``
into ``--out`` (default ``out/triton_bench``).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def stream_frames(streams: int, frames: int, folder: Path) -> list:
    from edgepose.data.sources import open_source
    from edgepose.data.synthetic import generate_clip

    clips = []
    for s in range(streams):
        video, _ = generate_clip(folder / f"cam{s}.mp4", num_frames=frames, num_people=1 + s % 4, seed=100 + s)
        src = open_source(source=str(video))
        try:
            clips.append([f for _, f, _ in src])
        finally:
            src.close()
    return clips


def run_streams(url: str, clips: list, on_ready=None) -> dict:
    """Every clip sent by its own thread at once; latencies (ms) and wall time.
    ``on_ready()`` runs after every stream's untimed warm-up frame, before the timed ones."""
    from edgepose.serving.client import TritonPipeline

    latencies, errors = [[] for _ in clips], []
    ready, go = threading.Barrier(len(clips) + 1), threading.Barrier(len(clips) + 1)

    def camera(i):  # tritonclient.http clients belong to the thread that made them
        pipe = None
        try:
            pipe = TritonPipeline(url)
            pipe(clips[i][0])  # warm-up, not timed
            ready.wait()
            go.wait()
            for frame in clips[i]:
                t0 = time.perf_counter()
                pipe(frame)
                latencies[i].append((time.perf_counter() - t0) * 1e3)
        except Exception as exc:  # reported after the run
            errors.append(exc)
            ready.abort()
            go.abort()
        finally:
            if pipe is not None:
                pipe.close()

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    try:
        ready.wait()
        if on_ready is not None:
            on_ready()
        go.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"triton_bench: a stream failed: {errors[0]}")
    return {"latencies": [v for lat in latencies for v in lat], "wall_s": wall}


def measure(url: str, streams: int, frames: int, folder: Path) -> dict:
    from edgepose.serving.client import model_statistics

    clips = stream_frames(streams, frames, folder)
    before = {}
    run = run_streams(url, clips, on_ready=lambda: before.update(model_statistics(url, "pose")))
    after = model_statistics(url, "pose")
    lat = np.asarray(run["latencies"])
    sizes = {b: n - before["batch_sizes"].get(b, 0) for b, n in after["batch_sizes"].items()}
    crops = after["inference_count"] - before["inference_count"]
    execs = after["execution_count"] - before["execution_count"]
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
    return {"streams": streams, "frames": int(lat.size), "fps": lat.size / run["wall_s"], "p50_ms": p50,
            "p90_ms": p90, "p99_ms": p99, "pose_crops": crops, "pose_executions": execs,
            "mean_pose_batch": crops / execs if execs else 0.0,
            "pose_batch_sizes": {str(b): n for b, n in sorted(sizes.items()) if n}}


def table(rows: list) -> str:
    head = "| streams | frames | frames/s | p50 ms | p90 ms | p99 ms | pose crops | pose executions | mean pose batch | executions per batch size |"
    lines = [head, "|---" * 10 + "|"]
    for r in rows:
        sizes = ", ".join(f"{b}: {n}" for b, n in r["pose_batch_sizes"].items())
        lines.append(f"| {r['streams']} | {r['frames']} | {r['fps']:.1f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r['pose_crops']} | {r['pose_executions']} | {r['mean_pose_batch']:.2f} | {sizes} |")
    return "\n".join(lines)


def start_own_server(args, folder: Path):
    from edgepose.models.defaults import default_model_paths
    from edgepose.serving.repository import write_repository
    from edgepose.serving.server import find_tritonserver, start_server
    from edgepose.serving.server_env import server_python

    det, pose = default_model_paths()
    write_repository(det, pose, folder / "repo", instances=args.instances, queue_delay_us=args.queue_delay_us)
    server = start_server(find_tritonserver(), folder / "repo", python=server_python(), host="127.0.0.1",
                          log_path=folder / "server.log")
    return server.wait_ready(180)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent streams (cameras)")
    ap.add_argument("--frames", type=int, default=30, help="frames per stream")
    ap.add_argument("--url", help="a running server (HOST:PORT, HTTP); default: start one")
    ap.add_argument("--instances", type=int, default=4, help="own server: entry model instances")
    ap.add_argument("--queue-delay-us", type=int, default=2000, help="own server: pose dynamic batching delay")
    ap.add_argument("--out", default="out/triton_bench")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="triton_bench.") as tmp:
        server = None if args.url else start_own_server(args, Path(tmp))
        url = args.url or server.url
        try:
            rows = [measure(url, n, args.frames, Path(tmp)) for n in args.streams]
        finally:
            if server is not None:
                server.stop()
    config = {"url": args.url or "own server (127.0.0.1)", "frames_per_stream": args.frames,
              "instances": args.instances if not args.url else None,
              "queue_delay_us": args.queue_delay_us if not args.url else None,
              "models": "built-in defaults (trained on synthetic people)" if not args.url else "the server's"}
    from edgepose.io_utils import atomic_path

    text = table(rows)
    for name, content in (("triton_bench.json", json.dumps({"config": config, "rows": rows}, indent=1)),
                          ("triton_bench.md", text + "\n")):
        with atomic_path(out / name) as tmp:
            tmp.write_text(content)
    print(text)


if __name__ == "__main__":
    main()
