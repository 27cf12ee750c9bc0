"""Distillation benchmark (not a test): a synthetic fixed scene, a big teacher, a light student.

    PYTHONPATH=. nice -n 10 python benchmarks/distill_bench.py --out /tmp/distill_bench

Scene: ``edgepose.data.synthetic.generate_clip`` at 768x576, one fixed background, three
people 60-150 px tall walking across; training clip (seed 11, 500 frames) and validation clip
(seed 12, 150 frames) share the background but not the people.  Teacher: the built-in
models (trained on synthetic people) exported at the full frame (detector 576x768) and at
256x192 (pose).  Student: what `edgepose distill` picks from the footage, started from the
same built-in weights.  Prints agreement with the teacher, both models' ORT latency in the
same run, and -- because the scene is synthetic -- both models' AP against the true people.
Wall time depends on the machine's load; CPU time (all threads) is printed too.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _scene(root: Path, frames: int, val_frames: int, size, heights):
    from edgepose.data.synthetic import generate_clip

    kw = dict(num_people=3, image_size=size, person_heights=heights, background_seed=5)
    out = {}
    for name, n, seed in (("train", frames, 11), ("val", val_frames, 12)):
        video = root / f"{name}.mp4"
        if not video.is_file():
            generate_clip(video, n, seed=seed, **kw)
        out[name] = video
    return out


def _teacher(root: Path, size):
    from edgepose.export import torch2onnx
    from edgepose.models.defaults import default_weights

    det, pose = root / "teacher_det.onnx", root / "teacher_pose.onnx"
    if not det.is_file():
        torch2onnx("default_det", det, weights=str(default_weights("default_det")), input_size=size, batch=1)
    if not pose.is_file():
        torch2onnx("default_pose", pose, weights=str(default_weights("default_pose")), input_size=(256, 192),
                   batch="dynamic")
    return det, pose


def _ap_vs_truth(det, pose, video, truth_json):
    """Box / keypoint AP of a model pair against the synthetic ground truth of ``video``."""
    from edgepose.data.sources import open_source
    from edgepose.eval.coco import evaluate
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(str(det), str(pose), backend="onnxruntime")
    results = []
    for index, (_, frame, _) in enumerate(open_source(source=str(video))):
        results += pipe(frame).to_coco(index + 1)  # generate_clip: image id = frame index + 1
    pipe.close()
    m = evaluate(str(truth_json), results)
    return {"bbox_AP": round(m["bbox_AP"], 3), "keypoints_AP": round(m["keypoints_AP"], 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/distill_bench")
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--val-frames", type=int, default=150)
    ap.add_argument("--epochs", type=int, default=None, help="default: edgepose distill's")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from edgepose.workflows.distill import DistillConfig, distill

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    size = (576, 768)
    clips = _scene(root, args.frames, args.val_frames, size, (60, 150))
    det, pose = _teacher(root, size)
    student_dir = root / "student"
    kw = {"det_epochs": args.epochs, "pose_epochs": args.epochs} if args.epochs else {}
    cfg = DistillConfig(out=str(student_dir), teacher_det=str(det), teacher_pose=str(pose),
                        source=str(clips["train"]), val_source=str(clips["val"]), threads=args.threads,
                        resume=True, **kw)
    t0, c0 = time.time(), time.process_time()
    if not (student_dir / "report.json").is_file():
        print(distill(cfg).format())
    wall, cpu = time.time() - t0, time.process_time() - c0
    report = json.loads((student_dir / "report.json").read_text())
    truth = clips["val"].with_suffix(".json")
    row = {
        "agreement": report["agreement"], "latency": report["latency"], "cost": report["cost"],
        "student_inputs": {"det": report["student"]["det"]["input_size"],
                           "pose": report["student"]["pose"]["input_size"]},
        "losses": {k: (v["first_loss"], v["final_loss"]) for k, v in report["student"].items()},
        "seconds": report["seconds"], "bench_wall_s": round(wall, 1), "bench_cpu_s": round(cpu, 1),
        "vs_truth": {"teacher": _ap_vs_truth(det, pose, clips["val"], truth),
                     "student": _ap_vs_truth(student_dir / "det.onnx", student_dir / "pose.onnx",
                                             clips["val"], truth)},
    }
    (root / "bench.json").write_text(json.dumps(row, indent=1))
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
