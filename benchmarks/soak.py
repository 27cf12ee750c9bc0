#!/usr/bin/env python
"""edgepose soak test: the pipeline over many generated frames; memory must stay flat.

    python benchmarks/soak.py                      # 10,000 frames, default models
    python benchmarks/soak.py --frames 2000 --det det.int8.onnx --pose pose.int8.onnx

Frames are synthetic scenes with a varying number of people (0..--max-people, a new count
every frame).  ``--pool N`` renders N distinct frames once and cycles through them (the
default, so the generator's own cost does not dominate); ``--pool 0`` renders every frame.

Reports resident memory (VmRSS from /proc/self/status; ru_maxrss where /proc is absent)
before the first frame, after the warm-up (the baseline: ONNX Runtime sizes its arenas on the
first frames), in the middle and at the end, plus frames/s per window.  The goal is an RSS
flat within 5% of the baseline; ``--strict`` makes a larger growth exit with status 1.
``--tracemalloc N`` snapshots Python's allocations at the baseline and at the end and reports
the N source lines that grew most (where a creep comes from, when it is Python's).
Writes ``soak.json`` into ``--out`` (default ``out/soak``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--det", help="detector ONNX/engine (default: the built-in default)")
    ap.add_argument("--pose", help="pose ONNX/engine (default: the built-in default)")
    ap.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    ap.add_argument("--max-people", type=int, default=10, help="people per frame vary in 0..N")
    ap.add_argument("--pool", type=int, default=256, help="distinct frames rendered once and cycled (0: all fresh)")
    ap.add_argument("--size", default="256x256", help="frame size HxW")
    ap.add_argument("--seed", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=None, help="frames before the baseline RSS (default 2%%, >= 20)")
    ap.add_argument("--report-every", type=int, default=None, help="frames per window (default frames/20)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--tolerance", type=float, default=0.05, help="allowed RSS growth (fraction, default 0.05)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when RSS grows more than --tolerance")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                    help="trace Python allocations (NumPy included, ONNX Runtime's own not) and report the N "
                         "source lines whose memory grew most from the baseline to the end (slower)")
    ap.add_argument("--out", default="out/soak")
    args = ap.parse_args(argv)
    if args.frames < 3:
        ap.error("--frames must be >= 3")
    try:
        args.size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(args.size) == 2 and min(args.size) >= 32
    except (ValueError, AssertionError):
        ap.error("--size takes HxW, e.g. 256x256")
    args.warmup = args.warmup if args.warmup is not None else min(args.frames // 3, max(20, args.frames // 50))
    args.report_every = args.report_every or max(1, args.frames // 20)
    return args


def frame_source(args):
    """Yields ``(frame, people)``: fresh renders, or a cycled pool of them."""
    import numpy as np

    from edgepose.data.synthetic import render_scene

    def render(i):
        rng = np.random.default_rng([args.seed, i])
        return render_scene(rng, args.size, num_people=int(rng.integers(0, args.max_people + 1)))[0]

    if args.pool <= 0:
        for i in range(args.frames):
            yield render(i)
        return
    pool = [render(i) for i in range(min(args.pool, args.frames))]
    for i in range(args.frames):
        yield pool[i % len(pool)]


def allocation_growth(before, after, top: int) -> list:
    """The ``top`` source lines whose traced memory grew most between two tracemalloc snapshots."""
    import tracemalloc

    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    diffs = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    diffs.sort(key=lambda d: d.size_diff, reverse=True)
    return [{"where": f"{d.traceback[0].filename}:{d.traceback[0].lineno}", "size_diff_kib": d.size_diff / 1024,
             "count_diff": d.count_diff} for d in diffs[:top] if d.size_diff > 0]


def _model_paths(args):
    from edgepose.models.defaults import resolve_models

    return tuple(str(path) for path in resolve_models(args.det, args.pose))


def _soak_loop(pipe, frames, args) -> dict:
    """Run every frame; RSS at the baseline / middle, a window every ``report_every`` frames,
    tracemalloc snapshots at the baseline and the end when asked."""
    import tracemalloc

    if args.tracemalloc:
        tracemalloc.start()
    m = {"before": {"frame": 0, "rss_mb": rss_mb(), "t": 0.0}, "baseline": None, "middle": None,
         "windows": [], "people": 0, "snapshots": []}
    t0 = time.perf_counter()
    w_start, w_frames = t0, 0
    for i, frame in enumerate(frames, 1):
        m["people"] += len(pipe(frame))
        w_frames += 1
        if i == args.warmup:
            m["baseline"] = {"frame": i, "rss_mb": rss_mb(), "t": time.perf_counter() - t0}
            if args.tracemalloc:
                m["snapshots"].append(tracemalloc.take_snapshot())
        if i == args.frames // 2:
            m["middle"] = {"frame": i, "rss_mb": rss_mb(), "t": time.perf_counter() - t0}
        if i % args.report_every == 0 or i == args.frames:
            now = time.perf_counter()
            win = {"frame": i, "fps": w_frames / max(now - w_start, 1e-9), "rss_mb": rss_mb(), "t": now - t0}
            m["windows"].append(win)
            print(f"[soak] frame {i:>6}/{args.frames}  {win['fps']:6.1f} frames/s  RSS {win['rss_mb']:8.1f} MiB",
                  file=sys.stderr, flush=True)
            w_start, w_frames = now, 0
    if m["snapshots"]:
        m["snapshots"].append(tracemalloc.take_snapshot())
        tracemalloc.stop()
    m["wall"] = time.perf_counter() - t0
    return m


def run(args) -> dict:
    from edgepose.io_utils import atomic_path
    from edgepose.pipeline.pipeline import Pipeline

    det, pose = _model_paths(args)
    runner_kw = {"threads": args.threads} if args.threads else {}
    frames = frame_source(args)
    pipe = Pipeline.from_files(det, pose, backend=args.backend, runner_kw=runner_kw)
    try:
        m = _soak_loop(pipe, frames, args)
    finally:
        pipe.close()
    wall = m["wall"]
    end = {"frame": args.frames, "rss_mb": rss_mb(), "t": wall}
    baseline = m["baseline"] or m["before"]
    middle = m["middle"] or end
    growth = (end["rss_mb"] - baseline["rss_mb"]) / max(baseline["rss_mb"], 1e-9)
    report = {
        "frames": args.frames, "pool": args.pool, "max_people": args.max_people, "size": list(args.size),
        "det": str(det), "pose": str(pose), "backend": args.backend,
        "rss_mb": {"before_first_frame": m["before"]["rss_mb"], "start": baseline["rss_mb"],
                   "middle": middle["rss_mb"], "end": end["rss_mb"]},
        "rss_growth": growth, "tolerance": args.tolerance, "flat": bool(abs(growth) <= args.tolerance),
        "fps_overall": args.frames / wall if wall > 0 else 0.0, "people_per_frame": m["people"] / args.frames,
        "windows": m["windows"], "wall_s": wall,
    }
    if len(m["snapshots"]) == 2:
        report["tracemalloc"] = {"from_frame": args.warmup, "to_frame": args.frames,
                                 "top": allocation_growth(*m["snapshots"], args.tracemalloc)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "soak.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    return report


def format_report(r) -> str:
    m = r["rss_mb"]
    lines = [f"soak: {r['frames']} frames ({r['people_per_frame']:.2f} people/frame), {r['fps_overall']:.1f} frames/s "
             f"overall, {r['wall_s']:.0f} s",
             f"RSS MiB: before {m['before_first_frame']:.1f} | start (after warm-up) {m['start']:.1f} | "
             f"middle {m['middle']:.1f} | end {m['end']:.1f}",
             f"RSS growth start->end: {100 * r['rss_growth']:+.2f}% "
             f"({'flat' if r['flat'] else 'NOT flat'} within {100 * r['tolerance']:.0f}%)",
             "frames/s over time: " + " ".join(f"{w['fps']:.1f}" for w in r["windows"])]
    if "tracemalloc" in r:
        t = r["tracemalloc"]
        lines.append(f"Python allocations that grew from frame {t['from_frame']} to {t['to_frame']} (tracemalloc):")
        lines += [f"  {e['size_diff_kib']:+9.1f} KiB {e['count_diff']:+8d} blocks  {e['where']}" for e in t["top"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except Exception as exc:  # noqa: BLE001
        from edgepose.errors import EdgeposeError

        if isinstance(exc, EdgeposeError):
            print(f"soak: error: {exc}", file=sys.stderr)
            return exc.exit_code
        raise
    print(format_report(report))
    print(f"wrote {Path(args.out) / 'soak.json'}")
    return 1 if (args.strict and not report["flat"]) else 0


if __name__ == "__main__":
    sys.exit(main())
