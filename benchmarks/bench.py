#!/usr/bin/env python
"""edgepose benchmark: FPS, per-stage latency, pose latency vs persons, box/keypoint AP.

One run measures every backend/precision available here and prints one table; it writes
``bench.json``, ``bench.md`` and ``bench.png`` (pose latency vs persons; AP vs precision)
into ``--out`` (default ``out/bench``), with the machine it ran on.

    python benchmarks/bench.py                       # default models, every row available
    python benchmarks/bench.py --quick               # < 3 minutes on a 2-core CPU
    python benchmarks/bench.py --build-dir build/    # + det.fp16.onnx / det.int8.onnx / *.engine
    python benchmarks/bench.py --coco person_keypoints_val2017.json --coco-images val2017/

Rows: torch FP32 eager (when torch imports and the default weights exist), ONNX Runtime
FP32, ONNX Runtime FP16 / INT8 (``--fp16 DET POSE``, ``--int8 DET POSE`` or ``--build-dir``),
TensorRT (``*.engine`` in ``--build-dir`` when TensorRT imports).  A row that cannot run is
listed with the reason instead of being dropped silently.  See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

PERSONS = (1, 5, 10, 20)
STAGE_COLS = ("total", "detector", "pose")


# ------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod):
    try:
        module = __import__(mod)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return getattr(module, "__version__", "unknown")


def machine_info() -> dict:
    import subprocess

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("edgepose", "numpy", "cv2", "onnx", "onnxruntime", "torch",
                                             "tensorrt", "pycocotools")},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    if info["versions"]["torch"]:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if gpu.returncode == 0 and gpu.stdout.strip():
            info["gpu"] = gpu.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# ------------------------------------------------------------------------ rows
def discover_rows(args):
    """``(rows, skipped)``: rows are dicts name/backend/precision/det/pose."""
    from edgepose._deps import available

    rows, skipped = [], []
    from edgepose.models.defaults import resolve_models

    det, pose = (str(path) for path in resolve_models(args.det, args.pose))
    # torch eager (reference) -- the zoo model with the same weights
    if "torch" in args.backends:
        if not available("torch"):
            skipped.append({"name": "torch FP32", "reason": "torch is not installed"})
        else:
            spec = _torch_specs(args)
            if isinstance(spec, str):
                skipped.append({"name": "torch FP32", "reason": spec})
            else:
                rows.append({"name": "torch FP32", "backend": "torch", "precision": "fp32",
                             "det": spec[0], "pose": spec[1]})
    if "onnxruntime" in args.backends:
        rows.append({"name": "ORT FP32", "backend": "onnxruntime", "precision": "fp32", "det": str(det),
                     "pose": str(pose)})
    extra = {"fp16": args.fp16, "int8": args.int8}
    build = Path(args.build_dir) if args.build_dir else None
    for prec in ("fp16", "int8"):
        pair = extra[prec]
        if pair is None and build is not None:
            cand = (build / f"det.{prec}.onnx", build / f"pose.{prec}.onnx")
            if all(p.is_file() for p in cand):
                pair = [str(p) for p in cand]
        if pair is None:
            skipped.append({"name": f"ORT {prec.upper()}", "reason": f"no {prec} models (pass --{prec} DET POSE or "
                            f"--build-dir with det.{prec}.onnx/pose.{prec}.onnx; `edgepose build` makes them)"})
        elif "onnxruntime" in args.backends:
            rows.append({"name": f"ORT {prec.upper()}", "backend": "onnxruntime", "precision": prec,
                         "det": str(pair[0]), "pose": str(pair[1])})
    if build is not None and "tensorrt" in args.backends:
        for prec in ("fp32", "fp16", "int8"):
            cand = (build / f"det.{prec}.engine", build / f"pose.{prec}.engine")
            if not all(p.is_file() for p in cand):
                continue
            if not available("tensorrt"):
                skipped.append({"name": f"TensorRT {prec.upper()}", "reason": "tensorrt is not importable here"})
                continue
            rows.append({"name": f"TensorRT {prec.upper()}", "backend": "tensorrt", "precision": prec,
                         "det": str(cand[0]), "pose": str(cand[1])})
    if args.rows:
        wanted = {r.strip().lower() for r in args.rows.split(",")}
        rows = [r for r in rows if r["name"].lower() in wanted]
    if not args.no_overlap:  # each runtime row again with overlapped stages (detector one frame ahead)
        rows = [twin for r in rows for twin in ([r, {**r, "name": r["name"] + " overlap", "overlap": True}]
                                                if r["backend"] != "torch" else [r])]
    return rows, skipped


def _torch_specs(args):
    if args.torch_det and args.torch_pose:
        return args.torch_det, args.torch_pose
    if args.det or args.pose:
        return ("--det/--pose are files; pass --torch-det NAME:WEIGHTS --torch-pose NAME:WEIGHTS "
                "for the matching torch row")
    try:
        from edgepose.models.defaults import default_weights

        return (f"default_det:{default_weights('default_det')}", f"default_pose:{default_weights('default_pose')}")
    except Exception as exc:  # noqa: BLE001
        return f"default weights unavailable ({exc})"


# ------------------------------------------------------------------------ inputs
def _read_video(path):
    from edgepose.data.sources import open_source

    source = open_source(source=str(path))
    try:
        return [frame for _, frame, _ in source]
    finally:
        source.close()


def make_inputs(args, data_dir: Path) -> dict:
    from edgepose.data.synthetic import generate_clip, generate_dataset, scene_with_people

    size = tuple(args.size)
    data_dir.mkdir(parents=True, exist_ok=True)
    clip_path = data_dir / f"clip_3p_{args.frames}f_{size[0]}x{size[1]}.mp4"
    if not clip_path.is_file():
        generate_clip(clip_path, args.frames + args.warmup, 3, seed=args.seed + 1, image_size=size)
    clip = _read_video(clip_path)
    scenes = {}
    for k in args.persons:
        items = []
        for i in range(args.frames):
            img, people = scene_with_people(args.seed + 100 * k + i, k, image_size=size)
            boxes = np.array([[p["bbox"][0], p["bbox"][1], p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3]]
                              for p in people], np.float32).reshape(-1, 4)
            items.append((img, boxes))
        scenes[k] = items
    if args.coco:
        ann, images = Path(args.coco), Path(args.coco_images)
        val = {"ann": str(ann), "images": str(images), "kind": "coco", "limit": args.val_images}
    else:
        vdir = data_dir / f"val_seed{args.val_seed}_{args.val_images}_{size[0]}x{size[1]}"
        ann = vdir / "annotations.json"
        if not ann.is_file():
            generate_dataset(vdir, args.val_images, args.val_seed, image_size=size, max_people=4,
                             progress=not args.no_progress)
        val = {"ann": str(ann), "images": str(vdir / "images"), "kind": "synthetic", "limit": None}
    return {"clip": clip, "scenes": scenes, "val": val}


# ------------------------------------------------------------------------ measuring
def _stats_dict(stats) -> dict:
    return {name: {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(st).items()}
            for name, st in stats.items()}


def _pose_only_ms(pipe, frame, boxes) -> float:
    """Pose-stage time for exactly these boxes: batched crops -> pose model (ms)."""
    batch, _ = pipe.pose_estimator.crop(frame, boxes)
    t0 = time.perf_counter()
    pipe.pose_estimator.infer(batch)
    return (time.perf_counter() - t0) * 1e3


def _results(pipe, frames, overlap: bool):
    if overlap:
        return (result for _, result in pipe.run_overlapped(frames))
    return (pipe(frame) for frame in frames)


def overhead_pct(stages: dict) -> float | None:
    """Share of the frame (mean ms) spent outside the two networks, in percent."""
    try:
        total = stages["total"]["mean"]
        return 100.0 * (total - stages["detector"]["mean"] - stages["pose"]["mean"]) / total
    except (KeyError, ZeroDivisionError):
        return None


def _time_clip(pipe, inputs, args, out, overlap):
    from edgepose.pipeline import StageTimer

    clip = inputs["clip"]
    for _ in _results(pipe, clip[: args.warmup], overlap):
        pass
    timer = StageTimer()
    frames = clip[args.warmup:] or clip
    t0 = time.perf_counter()
    people = 0
    for result in _results(pipe, frames, overlap):
        timer.merge_frame(result.timings)
        people += len(result)
    wall = time.perf_counter() - t0
    out["fps"] = len(frames) / wall if wall > 0 else 0.0
    out["frames"] = len(frames)
    out["people_per_frame"] = people / max(1, len(frames))
    out["stages"] = _stats_dict(timer.stats())
    out["overhead_pct"] = overhead_pct(out["stages"])


def measure_row(row, inputs, args) -> dict:
    from edgepose.eval.dataset_eval import evaluate_pipeline
    from edgepose.pipeline import LatencyStats, Pipeline

    runner_kw = {"threads": args.threads} if (args.threads and row["backend"] == "onnxruntime") else {}
    overlap = bool(row.get("overlap"))
    t_start = time.perf_counter()
    pipe = Pipeline.from_files(row["det"], row["pose"], backend=row["backend"], runner_kw=runner_kw,
                               score_threshold=args.score_threshold, max_persons=args.max_persons, overlap=overlap)
    out = dict(row)
    try:
        _time_clip(pipe, inputs, args, out, overlap)
        persons = {}
        for k, items in inputs["scenes"].items():
            _pose_only_ms(pipe, items[0][0], items[0][1])  # warm the batch size
            pose_gt = [_pose_only_ms(pipe, img, boxes) for img, boxes in items if len(boxes)]
            pipe_pose, detected, total = [], [], []
            for img, _ in items:
                result = pipe(img)
                detected.append(len(result))
                pipe_pose.append(result.timings.get("pose", 0.0))
                total.append(sum(result.timings.values()))
            st = LatencyStats.from_samples(pose_gt)
            persons[str(k)] = {"pose_ms_p50": st.p50, "pose_ms_p90": st.p90, "pose_ms_mean": st.mean,
                               "gt_people": float(np.mean([len(b) for _, b in items])),
                               "detected_mean": float(np.mean(detected)),
                               "pipeline_pose_ms_mean": float(np.mean(pipe_pose)),
                               "pipeline_total_ms_p50": float(np.median(total))}
        out["persons"] = persons
        if not overlap:  # the overlap row gives the same results (tests/pipeline/test_stages.py): AP measured once
            pipe.score_threshold = args.ap_threshold
            val = inputs["val"]
            metrics, _, _ = evaluate_pipeline(pipe, val["ann"], val["images"], limit=val["limit"],
                                              progress=not args.no_progress)
            out["ap"] = {k: float(v) for k, v in metrics.items()}
    finally:
        pipe.close()
    out["seconds"] = time.perf_counter() - t_start
    return out


def measure_calibration(args, data_dir: Path) -> dict | None:
    """One timed calibration of the FP32 pair (``--det``/``--pose``, default the built-in models)
    on ``--calib-images`` synthetic images: what ``build --int8`` does before quantizing
    (feeds, one statistics pass per model, the crops from the detector's pass, the ranges of
    all four methods), per model.  None with ``--calib-images 0``."""
    if not args.calib_images:
        return None
    from calib_cost import timed_calibration

    from edgepose.models.defaults import resolve_models
    from edgepose.workflows.calibration_feeds import load_calibration_images

    det, pose = (str(path) for path in resolve_models(args.det, args.pose))
    images = load_calibration_images(f"synthetic:{args.calib_images}:{args.seed}", size=args.calib_images,
                                     progress=False, cache_dir=data_dir)
    return {"images": len(images), "source": images.source, "det_model": det, "pose_model": pose,
            **timed_calibration(images, det, pose, threshold=args.ap_threshold, threads=args.threads)}


def _share_serial_ap(measured):
    """An overlap row gives the serial row's results exactly (tests/pipeline/test_stages.py), so it
    carries that row's AP, saying where it comes from, instead of measuring it twice."""
    serial = {r["name"]: r for r in measured if not r.get("overlap")}
    for r in measured:
        twin = serial.get(r["name"].removesuffix(" overlap")) if r.get("overlap") else None
        if twin is not None and "ap" in twin and "ap" not in r:
            r["ap"] = dict(twin["ap"])
            r["ap_from"] = f"{twin['name']} (identical results)"


# ------------------------------------------------------------------------ reporting
def _fmt(v, spec=".1f", missing="-"):
    return missing if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _row_cells(r, persons):
    st = r.get("stages", {})
    cells = [r["name"], _fmt(r.get("fps")), _fmt(r.get("overhead_pct"))]
    for s in STAGE_COLS:
        x = st.get(s)
        cells.append("/".join(_fmt(x.get(q)) for q in ("p50", "p90", "p99")) if x else "-")
    for k in persons:
        cells.append(_fmt(r.get("persons", {}).get(str(k), {}).get("pose_ms_p50")))
    ap = r.get("ap", {})
    cells += [_fmt(100 * ap["bbox_AP"]) if "bbox_AP" in ap else "-",
              _fmt(100 * ap["keypoints_AP"]) if "keypoints_AP" in ap else "-"]
    calib = r.get("calibration")
    cells += ["/".join(_fmt(calib[m]["seconds"]) for m in ("det", "pose")) if calib else "-",
              "/".join(_fmt(calib[m]["per_s"]) for m in ("det", "pose")) if calib else "-"]
    return cells


def _headers(persons):
    return (["row", "FPS", "overhead %"] + [f"{s} ms p50/p90/p99" for s in STAGE_COLS]
            + [f"pose ms @{k}p" for k in persons] + ["box AP", "kp AP", "calib s det/pose", "calib img/s det/pose"])


def _calibration_note(report) -> str | None:
    calib = report.get("calibration")
    if not calib:
        return None
    return (f"calib: INT8 calibration of the FP32 pair on {calib['images']} {calib['source']} images (feeds, "
            f"statistics, all four methods' ranges): det {calib['det']['seconds']:.1f} s "
            f"({calib['det']['per_s']:.1f} images/s), pose {calib['pose']['seconds']:.1f} s on "
            f"{calib['pose']['samples']} crops ({calib['pose']['per_s']:.1f} crops/s); shown on the INT8 rows")


def format_table(report) -> str:
    persons = report["config"]["persons"]
    head = _headers(persons)
    body = [_row_cells(r, persons) for r in report["rows"] if "error" not in r]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths)))
    lines = [line, "-" * len(line)]
    for b in body:
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(b, widths))))
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"{r['name']}: failed: {r['error']}")
    for s in report["skipped"]:
        lines.append(f"{s['name']}: skipped: {s['reason']}")
    note = _calibration_note(report)
    if note:
        lines.append(note)
    m = report["machine"]
    val = report["config"]["val"]
    lines.append(f"machine: {m['cpu']} ({m['usable_cpus']} usable CPUs); AP: {val['kind']} "
                 f"{report['config']['val_images']} images; pose ms @Np = pose stage for N ground-truth people")
    return "\n".join(lines)


def format_markdown(report) -> str:
    persons = report["config"]["persons"]
    head = _headers(persons)
    out = ["# edgepose benchmark", "", f"Machine: {report['machine']['cpu']}, {report['machine']['usable_cpus']} "
           f"usable CPUs, {report['machine']['platform']}", ""]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join("---" for _ in head) + "|")
    for r in report["rows"]:
        if "error" not in r:
            out.append("| " + " | ".join(_row_cells(r, persons)) + " |")
    out += ["", "## Per-stage latency (ms, p50 / p90 / p99)", ""]
    stages = []
    for r in report["rows"]:
        for s in r.get("stages", {}):
            if s not in stages:
                stages.append(s)
    out.append("| row | " + " | ".join(stages) + " |")
    out.append("|---|" + "|".join("---" for _ in stages) + "|")
    for r in report["rows"]:
        if "error" in r:
            continue
        cells = []
        for s in stages:
            x = r["stages"].get(s)
            cells.append(" / ".join(_fmt(x[q], ".2f") for q in ("p50", "p90", "p99")) if x else "-")
        out.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    out += ["", "## Pose latency vs persons per frame", "",
            "| row | persons | pose ms p50 (GT boxes) | detected / frame | pipeline pose ms | pipeline total ms p50 |",
            "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        for k, v in r.get("persons", {}).items():
            out.append(f"| {r['name']} | {k} | {_fmt(v['pose_ms_p50'], '.2f')} | {_fmt(v['detected_mean'], '.1f')} | "
                       f"{_fmt(v['pipeline_pose_ms_mean'], '.2f')} | {_fmt(v['pipeline_total_ms_p50'], '.2f')} |")
    out += ["", "## Accuracy (COCO, points)", "", "| row | box AP | AP50 | AP75 | APm | APl | kp AP | AP50 | AP75 | APm | APl |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        ap = r.get("ap")
        if not ap:
            continue
        vals = [ap.get(k) for k in ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APm", "bbox_APl", "keypoints_AP",
                                     "keypoints_AP50", "keypoints_AP75", "keypoints_APm", "keypoints_APl")]
        out.append(f"| {r['name']} | " + " | ".join(_fmt(100 * v) if v is not None and v >= 0 else "-" for v in vals) + " |")
    note = _calibration_note(report)
    if note:
        out += ["", note.replace("calib: ", "Calibration: ", 1)]
    notes = [f"- {r['name']}: failed: {r['error']}" for r in report["rows"] if "error" in r]
    notes += [f"- {s['name']}: skipped: {s['reason']}" for s in report["skipped"]]
    if notes:
        out += ["", "## Not measured", ""] + notes
    out += ["", f"Versions: {json.dumps(report['machine']['versions'])}", ""]
    return "\n".join(out)


def write_plot(report, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if "error" not in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        ks = sorted(int(k) for k in r.get("persons", {}))
        ax1.plot(ks, [r["persons"][str(k)]["pose_ms_p50"] for k in ks], marker="o", label=r["name"])
    ax1.set_xticks(list(report["config"]["persons"]))
    ax1.set_xlabel("persons per frame")
    ax1.set_ylabel("pose stage latency p50 (ms)")
    ax1.set_title("Pose latency vs persons")
    ax1.grid(alpha=0.3)
    if rows:
        ax1.legend(fontsize=8)
    names = [r["name"] for r in rows]
    x = np.arange(len(names))
    box = [100 * r.get("ap", {}).get("bbox_AP", np.nan) for r in rows]
    kp = [100 * r.get("ap", {}).get("keypoints_AP", np.nan) for r in rows]
    ax2.bar(x - 0.2, box, 0.4, label="box AP")
    ax2.bar(x + 0.2, kp, 0.4, label="keypoint AP")
    ax2.set_xticks(x)
    ax2.set_xticklabels(names, rotation=15, fontsize=8)
    ax2.set_ylabel("AP (points)")
    ax2.set_ylim(0, 100)
    ax2.set_title(f"AP vs precision ({report['config']['val']['kind']} val)")
    ax2.legend(fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------ main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/bench", help="output folder (default: out/bench)")
    ap.add_argument("--det", help="detector ONNX for the ORT FP32 row (default: the built-in default)")
    ap.add_argument("--pose", help="pose ONNX for the ORT FP32 row (default: the built-in default)")
    ap.add_argument("--torch-det", help="torch row detector: NAME[:WEIGHTS] (default: default_det + shipped weights)")
    ap.add_argument("--torch-pose", help="torch row pose: NAME[:WEIGHTS]")
    ap.add_argument("--fp16", nargs=2, metavar=("DET", "POSE"), help="FP16 ONNX pair")
    ap.add_argument("--int8", nargs=2, metavar=("DET", "POSE"), help="INT8 (Q/DQ) ONNX pair")
    ap.add_argument("--build-dir", help="folder with det.{fp16,int8}.onnx / pose.*.onnx and *.engine files")
    ap.add_argument("--backends", default="torch,onnxruntime,tensorrt",
                    help="comma-separated backends to include (default: all)")
    ap.add_argument("--rows", help="only these row names, comma-separated (e.g. 'ORT FP32,ORT INT8')")
    ap.add_argument("--coco", help="COCO keypoints annotation file for AP instead of the synthetic val set")
    ap.add_argument("--coco-images", help="image folder for --coco")
    ap.add_argument("--val-images", type=int, default=None, help="synthetic val images (default 500; --quick 40)")
    ap.add_argument("--val-seed", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=None, help="frames per timing set (default 60; --quick 10)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up frames (default 5; --quick 2)")
    ap.add_argument("--persons", default=",".join(map(str, PERSONS)), help="persons per frame for the sweep")
    ap.add_argument("--size", default="256x256", help="synthetic frame size HxW")
    ap.add_argument("--seed", type=int, default=2000, help="seed of the timing clip and scenes")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime / torch intra-op threads")
    ap.add_argument("--score-threshold", type=float, default=0.3, help="detector threshold for the timing runs")
    ap.add_argument("--ap-threshold", type=float, default=0.1, help="detector threshold for the AP run")
    ap.add_argument("--max-persons", type=int, default=20)
    ap.add_argument("--no-overlap", action="store_true", help="no overlapped-stage twin of each row")
    ap.add_argument("--calib-images", type=int, default=None,
                    help="synthetic images for one timed INT8 calibration of the FP32 pair (default 32; "
                         "--quick 8; 0: skip)")
    ap.add_argument("--quick", action="store_true", help="few images and frames: under 3 minutes on 2 cores")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.coco and not args.coco_images:
        ap.error("--coco needs --coco-images DIR")
    args.val_images = args.val_images or (40 if args.quick else 500)
    args.frames = args.frames or (10 if args.quick else 60)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    args.calib_images = args.calib_images if args.calib_images is not None else (8 if args.quick else 32)
    if args.calib_images < 0:
        ap.error("--calib-images must be >= 0")
    try:
        args.persons = tuple(int(v) for v in args.persons.split(",") if v.strip())
        args.size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(args.size) == 2 and min(args.size) >= 32 and args.persons and min(args.persons) >= 1
    except (ValueError, AssertionError):
        ap.error("--persons takes numbers >= 1 like 1,5,10,20 and --size HxW (>= 32)")
    if min(args.val_images, args.frames) < 1:
        ap.error("--val-images and --frames must be >= 1")
    args.backends = tuple(b.strip() for b in args.backends.split(","))
    return args


def run(args) -> dict:
    from edgepose.io_utils import atomic_path

    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    machine = machine_info()
    rows, skipped = discover_rows(args)
    inputs = make_inputs(args, out / "data")
    measured = []
    for row in rows:
        print(f"[bench] {row['name']}: {row['det']} + {row['pose']}", file=sys.stderr, flush=True)
        try:
            measured.append(measure_row(row, inputs, args))
        except Exception as exc:  # noqa: BLE001 - report the row as failed, keep the others
            measured.append({**row, "error": f"{type(exc).__name__}: {exc}"})
    _share_serial_ap(measured)
    calibration = None
    try:
        calibration = measure_calibration(args, out / "data")
    except Exception as exc:  # noqa: BLE001 - the latency rows stand without it
        skipped.append({"name": "calibration", "reason": f"{type(exc).__name__}: {exc}"})
    for r in measured:
        if calibration and r.get("precision") == "int8" and "error" not in r:
            r["calibration"] = {m: calibration[m] for m in ("det", "pose")}
    report = {
        "machine": machine,
        "config": {"quick": args.quick, "frames": args.frames, "warmup": args.warmup, "persons": list(args.persons),
                   "size": list(args.size), "val_images": args.val_images, "val_seed": args.val_seed,
                   "val": {k: v for k, v in inputs["val"].items()}, "score_threshold": args.score_threshold,
                   "ap_threshold": args.ap_threshold, "threads": args.threads},
        "rows": measured,
        "calibration": calibration,
        "skipped": skipped,
        "wall_s": round(time.perf_counter() - t0, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with atomic_path(out / "bench.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=float))
    with atomic_path(out / "bench.md") as tmp:
        tmp.write_text(format_markdown(report))
    with atomic_path(out / "bench.png") as tmp:
        write_plot(report, tmp.with_suffix(".png"))
        os.replace(tmp.with_suffix(".png"), tmp)
    return report


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except Exception as exc:  # noqa: BLE001
        from edgepose.errors import EdgeposeError

        if isinstance(exc, EdgeposeError):
            print(f"bench: error: {exc}", file=sys.stderr)
            return exc.exit_code
        raise
    print(format_table(report))
    print(f"wrote {Path(args.out) / 'bench.json'}, bench.md, bench.png ({report['wall_s']:.0f} s)")
    ok = [r for r in report["rows"] if "error" not in r]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
