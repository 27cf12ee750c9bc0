"""`edgepose eval`: COCO person box AP and keypoint AP of a detector + pose pair."""
from __future__ import annotations

import json

import click

from edgepose.cli import main
from edgepose.cli._defaults import say_builtin_models


@main.command("eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ann", required=True, type=click.Path(dir_okay=False), metavar="VAL.json",
              help="COCO keypoints annotation file (synthetic or person_keypoints_val2017.json).")
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder with the annotation file's images.")
@click.option("--det", metavar="MODEL", help="Detector .onnx/.engine (default: the built-in default_det).")
@click.option("--pose", metavar="MODEL", help="Pose .onnx/.engine (default: the built-in default_pose).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]), default="auto",
              show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="M.json",
              help="Write the metrics (bbox_AP, keypoints_AP, ... on pycocotools' 0-1 scale).")
@click.option("--results", "results_path", type=click.Path(dir_okay=False), metavar="R.json",
              help="Also write the COCO-format detections.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images (by id).")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Minimum detector score (low thresholds give the full precision/recall curve).")
@click.option("--max-persons", type=click.IntRange(1), default=20, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--no-progress", is_flag=True)
def eval_cmd(ann, images_dir, det, pose, backend, json_path, results_path, limit, score_threshold, max_persons,
             threads, no_progress):
    """Print AP, AP50, AP75, APm, APl for person boxes and keypoints (OKS).

    Without --det/--pose it uses the built-in default models, trained on synthetic people: they
    show the pipeline working but will not find real people reliably. For real models: edgepose
    export centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx (likewise
    fastpose_res50), then --det/--pose.

    --json/--results are checked before any work (not an input, writable folder); when one
    cannot be written at the end (disk full) its content goes to a named file in the temp
    folder and the command exits 1 saying where.
    """
    from edgepose.eval.dataset_eval import evaluate_pipeline, format_metrics
    from edgepose.pipeline.timing import format_latency_table
    from edgepose.outputs import check_outputs, write_each
    from edgepose.pipeline.pipeline import Pipeline

    check_outputs({"--ann": ann, "--images": images_dir, "--det": det, "--pose": pose},
                  {"--json": json_path, "--results": results_path})
    if det is None or pose is None:
        from edgepose.models.defaults import default_model_paths

        d_det, d_pose = default_model_paths()
        say_builtin_models(det is None, pose is None)
        det, pose = det or str(d_det), pose or str(d_pose)
    runner_kw = {"threads": threads} if threads else {}
    pipe = Pipeline.from_files(det, pose, backend=backend, runner_kw=runner_kw,
                               score_threshold=score_threshold, max_persons=max_persons)
    try:
        metrics, results, stats = evaluate_pipeline(pipe, ann, images_dir, limit=limit, progress=not no_progress)
    finally:
        pipe.close()
    click.echo(f"det: {det}\npose: {pose}\nimages: {metrics.get('images')}")
    click.echo(format_metrics(metrics))
    if stats:
        click.echo(format_latency_table(stats, fps=metrics.get("fps")))
    for path in write_each([(json_path, json.dumps(metrics, indent=2), "metrics"),
                            (results_path, json.dumps(results), "detections")]):
        click.echo(f"{'metrics' if path == json_path else 'results'}: {path}")
