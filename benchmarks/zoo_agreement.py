"""INT8 agreement with FP32, per calibration method, of the real-size zoo models (RANDOM weights).

    python benchmarks/zoo_agreement.py --out build/zoo_agreement                 # res18, dla34, resdcn18
    python benchmarks/zoo_agreement.py --models res18 --calib-size 32 --cpu-rewrite

For each pair -- ``res18`` (centernet_res18 + fastpose_res50), ``resdcn18`` (centernet_resdcn18 +
simplepose_res50), ``dla34`` (centernet_dla34 + fastpose_res50) -- the models are made at their
real sizes (detector 512x512 unless ``--det-size``, pose 256x192) with random weights,
BatchNorm statistics re-estimated on synthetic people images and heads rescaled so they find
"people" (``benchmarks/real_size_models.py``), exported with ``edgepose.export.torch2onnx`` (the
export API: checked against PyTorch on ONNX Runtime) and built with the real CLI,
``python -m edgepose build --int8`` (default ``--calib-method``: every method is scored and the
best one kept).  The calibration set is a folder of the same synthetic people scenes
real_size_models.py normalises its BatchNorm on (``scene_with_people``, 1-4 people, at the
detector's input size), other seeds; the pose model calibrates on the FP32 detector's crops.

From each ``report.json`` it collects, per model, the agreement of every method with FP32 on
the held-out images (detector: box AP of INT8 people vs FP32 people + person-count ratio;
pose: keypoint AP (OKS) vs FP32 on the same crops), the method chosen, the layers kept in FP32
and the final agreement, plus the build's wall time; prints one Markdown table and writes
``OUT/zoo_agreement.json``.  A build that fails (non-zero exit) is a row with its error line.
The weights are random: this measures INT8-vs-FP32 agreement, never accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_size_models import realistic_random_model  # noqa: E402

PAIRS = {"res18": ("centernet_res18", "fastpose_res50"),
         "resdcn18": ("centernet_resdcn18", "simplepose_res50"),
         "dla34": ("centernet_dla34", "fastpose_res50")}
METHODS = ("entropy", "minmax", "percentile", "mse")


def export_model(name: str, out_dir: Path, input_size=None, batch=1) -> Path:
    """The realistic random ``name`` exported (kept when already there) with the export API."""
    from edgepose.export import torch2onnx

    suffix = "" if input_size is None else f".{input_size[0]}x{input_size[1]}"
    path = out_dir / f"{name}{suffix}.fp32.onnx"
    if not path.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        torch2onnx(realistic_random_model(name), path, input_size=input_size, batch=batch)
    return path


def write_frames(folder: Path, count: int, size, seed: int) -> Path:
    """``count`` synthetic people scenes (1-4 people, ``size`` = (H, W)) as PNGs in ``folder``."""
    import cv2

    from edgepose.data.synthetic import scene_with_people

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"frame_{i:04d}.png"
        if not path.is_file():
            cv2.imwrite(str(path), scene_with_people(seed + i, 1 + i % 4, image_size=tuple(size))[0])
    return folder


def noise_floor(det: Path, pose: Path, frames: Path, count: int, sigmas=(0.5, 2.0), threads=2) -> dict:
    """How far FP32 agrees with itself when the input moves far less than INT8 moves it: box AP
    of the detector on frames with Gaussian pixel noise (``sigma`` grey levels, rounded to uint8)
    against its boxes on the clean frames, and keypoint AP of the pose model on the noisy frames
    cropped with the clean frames' boxes (same boxes, as the build's pose agreement) against its
    clean keypoints.  Same metric code as the build (``edgepose.workflows.agreement``)."""
    import cv2
    import numpy as np

    from edgepose.eval.coco import evaluate
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.workflows.agreement import reference_doc

    paths = sorted(frames.glob("*.png"))
    images = [cv2.imread(str(p)) for p in paths[1::max(1, len(paths) // count)][:count]]
    pipe = Pipeline.from_files(str(det), str(pose), backend="onnxruntime", score_threshold=0.1,
                               runner_kw={"providers": ["CPUExecutionProvider"], "disable_cse": True,
                                          "threads": threads})
    rng = np.random.default_rng(0)
    try:
        found = [pipe.detector(im) for im in images]
        clean = [r for i, (im, d) in enumerate(zip(images, found)) for r in pipe.finish(im, d).to_coco(i + 1)]
        doc, result = reference_doc(clean, images), {"images": len(images), "people_fp32": len(clean)}
        for sigma in sigmas:
            noisy = [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).round().astype(np.uint8) for im in images]
            det_recs = [r for i, im in enumerate(noisy) for r in pipe(im).to_coco(i + 1)]
            pose_recs = [r for i, (im, d) in enumerate(zip(noisy, found)) for r in pipe.finish(im, d).to_coco(i + 1)]
            result[f"sigma_{sigma:g}"] = {
                "bbox_ap": round(float(evaluate(doc, det_recs, iou_types=("bbox",))["bbox_AP"]), 4),
                "people": len(det_recs),
                "keypoints_ap": round(float(evaluate(doc, pose_recs, iou_types=("keypoints",))["keypoints_AP"]), 4)}
    finally:
        pipe.close()
    return result


def run_build(det: Path, pose: Path, frames: Path, out: Path, args, cpu_rewrite: bool) -> dict:
    """``edgepose build --int8`` through the CLI; ``{"rc", "wall_s", "report" | "error"}``."""
    cmd = [sys.executable, "-m", "edgepose", "build", "--int8", "--det", str(det), "--pose", str(pose),
           "--calib", str(frames), "--calib-size", str(args.calib_size), "--threads", str(args.threads),
           "--out", str(out)]
    if cpu_rewrite:
        cmd.append("--cpu-rewrite")
    for flag, value in (("--calib-method", args.calib_method), ("--min-agreement", args.min_agreement),
                        ("--max-fp32-layers", args.max_fp32_layers)):
        if value is not None:
            cmd += [flag, str(value)]
    log_path = out.parent / f"{out.name}.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    result = {"rc": rc, "wall_s": round(time.perf_counter() - t0, 1), "log": str(log_path), "command": cmd}
    if rc == 0:
        result["report"] = json.loads((out / "report.json").read_text())
    else:
        lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
        result["error"] = lines[-1] if lines else f"exit {rc}, no output"
    return result


def summarise(role_entry: dict) -> dict:
    """Per-method agreement, the choice, FP32 layers kept and the final agreement of one model."""
    agreement = role_entry.get("agreement", {})
    return {"methods": agreement.get("methods", {}), "chosen": agreement.get("chosen"),
            "chosen_by": agreement.get("chosen_by"), "final": agreement.get("final", {}),
            "kept_fp32_for_agreement": agreement.get("kept_fp32_for_agreement", 0),
            "fp32_nodes": role_entry.get("fp32_nodes", []), "held_out_images": agreement.get("held_out_images")}


def _ap(entry: dict, role: str) -> str:
    """AP vs FP32; for the detector with the person-count ratio INT8 / FP32 in brackets."""
    ap = entry.get("ap_vs_fp32")
    if ap is None:
        return "n/a"
    ratio = entry.get("count_ratio")
    return f"{ap:.3f}" + ("" if ratio is None or role != "det" else f" ({ratio:.2f})")


def _noise_cell(noise, role: str) -> str:
    if not noise:
        return "-"
    key = "bbox_ap" if role == "det" else "keypoints_ap"
    return " / ".join(f"{noise[k][key]:.3f}" for k in sorted(noise) if k.startswith("sigma_"))


def table(rows: list) -> str:
    """One Markdown table: a line per model of every build."""
    head = ("| pair | build | model | " + " | ".join(METHODS) + " | chosen | FP32 layers kept | final | "
            "FP32 noise floor (sigma 0.5 / 2) | calib images / crops | wall s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        if row["rc"] != 0:
            what = "FAILED" if row["rc"] > 0 else "STOPPED"  # a negative exit status: killed by a signal
            lines.append(f"| {row['pair']} | {row['build']} | - | {what} (exit {row['rc']}): {row['error']} |"
                         + " |" * 8 + f" {row['wall_s']} |")
            continue
        for role in ("det", "pose"):
            s = row["models"][role]
            cells = [_ap(s["methods"].get(m, {}), role) for m in METHODS]
            calib = row["calibration"]
            tail = (f"{calib.get('det_images')} / {calib.get('pose_crops')} | {row['wall_s']} |" if role == "det"
                    else " | |")
            lines.append(f"| {row['pair']} | {row['build']} | {row['names'][role]} | " + " | ".join(cells)
                         + f" | {s['chosen']} | {len(s['fp32_nodes'])} | {_ap(s['final'], role)} | "
                         + f"{_noise_cell(row.get('noise_floor'), role)} | " + tail)
    return "\n".join(lines)


def run_pair(pair: str, args, out: Path, frames: Path, det_size, cpu_rewrite: bool) -> dict:
    det_name, pose_name = PAIRS[pair]
    models = out / "models"
    det = export_model(det_name, models, input_size=det_size)
    pose = export_model(pose_name, models, batch="dynamic")
    noise_path = out / f"{pair}.noise_floor.json"
    if args.noise_images and not noise_path.is_file():
        noise_path.write_text(json.dumps(noise_floor(det, pose, frames, args.noise_images, threads=args.threads)))
    if args.noise_only:
        return None
    build = "int8" + (" --cpu-rewrite" if cpu_rewrite else "") + (
        "" if args.min_agreement is None else f" --min-agreement {args.min_agreement:g}")
    build_dir = out / _slug(pair, build)
    result = run_build(det, pose, frames, build_dir, args, cpu_rewrite)
    row = {"pair": pair, "build": build, "names": {"det": det_name, "pose": pose_name},
           "calib_size": args.calib_size, "det_size": list(det_size or (512, 512)), **result}
    if result["rc"] == 0:
        report = row.pop("report")
        row["calibration"] = report.get("calibration", {})
        row["models"] = {role: summarise(report["models"][role]) for role in ("det", "pose")}
    return row


def _slug(pair: str, build: str) -> str:
    """``res18`` for plain ``int8``, ``res18_cpu-rewrite_min-agreement-0`` for the variants."""
    flags = build.split(" ", 1)[1] if " " in build else ""
    return "_".join([pair] + [f.strip("-").replace(" ", "-") for f in flags.split(" --") if f])


def _row_path(out: Path, row: dict) -> Path:
    return out / f"{_slug(row['pair'], row['build'])}.row.json"


def collect_rows(out: Path) -> list:
    """Every build's row in ``out`` (one ``<pair>[_cpu].row.json`` each), in a fixed order."""
    order = {name: i for i, name in enumerate(PAIRS)}
    merged = out / "zoo_agreement.json"
    for row in json.loads(merged.read_text())["rows"] if merged.is_file() else []:  # rows kept in it only
        if not _row_path(out, row).is_file():
            _row_path(out, row).write_text(json.dumps(row, indent=2))
    rows = [json.loads(p.read_text()) for p in out.glob("*.row.json")]
    for row in rows:
        noise = out / f"{row['pair']}.noise_floor.json"
        row["noise_floor"] = json.loads(noise.read_text()) if noise.is_file() else None
    return sorted(rows, key=lambda r: (order.get(r["pair"], 99), r["build"]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="build/zoo_agreement", help="folder for models, frames, builds, JSON")
    ap.add_argument("--models", default="res18,dla34,resdcn18", help=f"pairs, comma-separated: {','.join(PAIRS)}")
    ap.add_argument("--calib-size", type=int, default=64, help="build --calib-size (images / pose crops)")
    ap.add_argument("--frames", type=int, default=None,
                    help="synthetic frames written (default: calib-size plus the held-out quarter)")
    ap.add_argument("--det-size", default=None, help="detector input HxW (default: the model's, 512x512)")
    ap.add_argument("--calib-method", default=None, help="force one method (default: chosen by agreement)")
    ap.add_argument("--cpu-rewrite", action="store_true", help="also build each pair with --cpu-rewrite")
    ap.add_argument("--cpu-rewrite-only", action="store_true", help="only the --cpu-rewrite builds")
    ap.add_argument("--min-agreement", type=float, default=None, help="build --min-agreement (default: the build's)")
    ap.add_argument("--max-fp32-layers", type=int, default=None, help="build --max-fp32-layers (default: any)")
    ap.add_argument("--noise-images", type=int, default=8,
                    help="frames for the FP32-vs-FP32 noise floor (0: skip it)")
    ap.add_argument("--noise-only", action="store_true", help="only the noise floor of each pair, no build")
    ap.add_argument("--table-only", action="store_true", help="only print/write the table of the builds in OUT")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2000, help="first scene seed of the calibration frames")
    args = ap.parse_args(argv)
    out = Path(args.out)
    det_size = tuple(int(v) for v in args.det_size.lower().split("x")) if args.det_size else None
    frame_size = det_size or (512, 512)
    count = args.frames or args.calib_size + max(1, round(args.calib_size / 4))
    frames = write_frames(out / f"frames_{frame_size[0]}x{frame_size[1]}", count, frame_size, args.seed)
    for pair in filter(None, args.models.split(",")):
        if pair not in PAIRS:
            ap.error(f"--models: unknown pair {pair!r}; choose from {', '.join(PAIRS)}")
    if args.table_only:
        args.models = ""
    variants = [True] if args.cpu_rewrite_only else [False, True] if args.cpu_rewrite else [False]
    for cpu_rewrite in variants:
        for pair in filter(None, args.models.split(",")):
            row = run_pair(pair, args, out, frames, det_size, cpu_rewrite)
            if row is not None:
                _row_path(out, row).write_text(json.dumps(row, indent=2))
    rows = collect_rows(out)  # with the rows of earlier (or parallel) runs into the same OUT
    (out / "zoo_agreement.json").write_text(json.dumps(
        {"weights": "random (BatchNorm re-estimated, heads rescaled): agreement only, not accuracy",
         "rows": rows}, indent=2))
    print(table(rows))
    return 0 if all(r["rc"] == 0 for r in rows) else 1  # every build in OUT


if __name__ == "__main__":
    raise SystemExit(main())
