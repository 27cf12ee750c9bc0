"""`edgepose train det|pose`: train on COCO-format data (synthetic people or real COCO)."""
from __future__ import annotations

import click

from edgepose.cli import main
from edgepose.cli._options import size_callback


def _common(func):
    opts = [
        click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
                     help="Folder with annotations.json and images/ (e.g. from `edgepose data synth`)."),
        click.option("--ann", "ann_file", type=click.Path(dir_okay=False), default=None, metavar="ANN.json",
                     help="COCO annotation file instead of DIR/annotations.json (e.g. person_keypoints_train2017.json)."),
        click.option("--images", "image_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
                     help="Image folder for --ann (default: DIR/images or beside the annotation file)."),
        click.option("--out", required=True, type=click.Path(dir_okay=False), metavar="FILE.pth",
                     help="Checkpoint written after every epoch (official wrapper)."),
        click.option("--epochs", type=click.IntRange(1), default=None),
        click.option("--batch-size", type=click.IntRange(1), default=None),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True,
                     help="Peak AdamW learning rate (warm-up, then cosine decay)."),
        click.option("--input-size", default=None, metavar="HxW", callback=size_callback(lo=32, example="256x192"),
                     help="Network input (default: the model's; both sides multiples of 32, 32-4096)."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--resume", is_flag=True, help="Continue from --out and its .resume side file."),
        click.option("--threads", type=click.IntRange(1), default=None,
                     help="torch threads (1 is fastest on a busy machine)."),
        click.option("--no-progress", is_flag=True),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _check_data(data_dir, ann_file):
    from edgepose.errors import UsageError

    if data_dir is None and ann_file is None:
        raise UsageError("pass --data DIR (with annotations.json and images/) or --ann FILE.json")


@main.group()
def train():
    """Train a detector (CenterNet) or a pose model (SPPE) on COCO-format data."""


@train.command("det")
@_common
@click.option("--arch", default="default_det", show_default=True,
              help="Zoo CenterNet model (default_det, centernet_res18, centernet_resdcn18, ...).")
@click.option("--num-classes", type=click.IntRange(1), default=1, show_default=True,
              help="Classes to train (1 = person only).")
def det_cmd(data_dir, ann_file, image_dir, out, epochs, batch_size, lr, input_size, seed, resume, threads,
            no_progress, arch, num_classes):
    """CenterNet: gaussian centre heatmaps + focal loss, L1 on wh (x0.1) and reg (x1)."""
    from edgepose.train.det import train_det

    _check_data(data_dir, ann_file)
    result = train_det(data_dir, out, arch=arch, epochs=epochs or 8, batch_size=batch_size or 16, lr=lr,
                       input_size=input_size, seed=seed, resume=resume, num_classes=num_classes, threads=threads,
                       progress=not no_progress, ann_file=ann_file, image_dir=image_dir)
    click.echo(result.format())


@train.command("pose")
@_common
@click.option("--arch", default="default_pose", show_default=True,
              help="Zoo pose model (default_pose, simplepose_res50, fastpose_res50).")
@click.option("--sigma", type=click.FloatRange(0, min_open=True), default=None,
              help="Heatmap gaussian sigma in heatmap pixels (default 2 * W / 192).")
def pose_cmd(data_dir, ann_file, image_dir, out, epochs, batch_size, lr, input_size, seed, resume, threads,
             no_progress, arch, sigma):
    """SPPE: crops from jittered GT boxes, scale/rotation/flip augmentation, heatmap MSE."""
    from edgepose.train.pose import train_pose

    _check_data(data_dir, ann_file)
    result = train_pose(data_dir, out, arch=arch, epochs=epochs or 8, batch_size=batch_size or 32, lr=lr,
                        input_size=input_size, seed=seed, resume=resume, sigma=sigma, threads=threads,
                        progress=not no_progress, ann_file=ann_file, image_dir=image_dir)
    click.echo(result.format())
