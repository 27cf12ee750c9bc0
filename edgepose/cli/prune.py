"""`edgepose prune`: structured channel pruning (network slimming) + fine-tuning."""
from __future__ import annotations

import click

from edgepose.cli import main


@main.command("prune")
@click.argument("model")
@click.option("--weights", required=True, type=click.Path(dir_okay=False), metavar="F.pth",
              help="Trained checkpoint of MODEL (e.g. edgepose/models/weights/default_pose.pth).")
@click.option("--ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="Fraction of the model's MACs removed (0.5: the pruned model has <= 50 % of the MACs); "
                   "with --ratio-of channels, Torch-Pruning's fraction of prunable channels removed instead.")
@click.option("--ratio-of", type=click.Choice(["macs", "channels"]), default="macs", show_default=True,
              help="What --ratio is a fraction of. macs: the channel ratio that reaches the MAC target is searched "
                   "for; channels: the earlier meaning (0.5 of the channels removes ~78 % of default_pose's MACs).")
@click.option("--scope", type=click.Choice(["global", "layer"]), default="global", show_default=True,
              help="global: one BatchNorm-scale threshold over the whole net (at most 90 % of a layer); "
                   "layer: the same fraction of channels removed from every prunable layer.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="COCO-format training data (annotations.json + images/) for sparsity training and fine-tuning.")
@click.option("--ann", "ann_file", type=click.Path(dir_okay=False), default=None, metavar="ANN.json",
              help="COCO annotation file instead of DIR/annotations.json.")
@click.option("--images", "image_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Image folder for --ann.")
@click.option("--val", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="COCO-format validation folder: AP before/after (pipeline with the other built-in default model).")
@click.option("--sparsity", type=click.FloatRange(0), default=1e-5, show_default=True,
              help="L1 coefficient on BatchNorm scales during sparsity training (0: prune the weights as they are).")
@click.option("--sparse-epochs", type=click.IntRange(0), default=1, show_default=True,
              help="Epochs of sparsity training before channels are removed.")
@click.option("--epochs", type=click.IntRange(0), default=3, show_default=True,
              help="Fine-tuning epochs after pruning (docs/compression.md: 6 epochs on 4000 images for ratio 0.5).")
@click.option("--kd/--no-kd", default=True, show_default=True,
              help="Fine-tune with distillation from the unpruned model (0.5 GT + 0.5 teacher).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default 16 (detector) / 32 (pose).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1.5e-3, show_default=True,
              help="Peak AdamW learning rate of each phase.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="torch / ORT threads.")
@click.option("--eval-limit", type=click.IntRange(1), default=None, help="Evaluate on the first N --val images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="OUT.pth",
              help="Pruned checkpoint (rebuilt by `edgepose export MODEL --weights OUT.pth`); report in OUT.json.")
@click.option("--no-progress", is_flag=True)
def prune_cmd(model, weights, ratio, ratio_of, scope, data_dir, ann_file, image_dir, val, sparsity, sparse_epochs,
              epochs, kd, batch_size, lr, threads, eval_limit, seed, out, no_progress):
    """Remove the weakest channels of zoo MODEL (Torch-Pruning, network slimming), then fine-tune.

    --ratio 0.5 removes half of the MACs (--ratio-of channels: of the channels). Widths stay
    multiples of 8, heads are kept, layers Torch-Pruning cannot follow (DUC PixelShuffle) are
    left out.  Prints MACs (target, reached), parameters, ORT latency ratio, AP (--val).

    \b
    Example:
      edgepose data synth --out data/train --images 1000
      edgepose data synth --out data/val --images 200 --seed 1000
      edgepose prune default_pose --weights edgepose/models/weights/default_pose.pth \\
          --ratio 0.5 --data data/train --val data/val --out pose_pruned.pth
      edgepose export default_pose --weights pose_pruned.pth --out pose_pruned.onnx --batch dynamic
    """
    from edgepose.workflows.prune import PruneJob, prune_model

    job = PruneJob(model, weights, out, data_dir, ann_file, image_dir, val, ratio, ratio_of, scope, sparsity,
                   sparse_epochs, epochs, kd, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
                   eval_limit=eval_limit, progress=not no_progress)
    click.echo(prune_model(job).format())
