"""`edgepose data synth|clip`: generate the procedural people dataset / clips."""
from __future__ import annotations

import click

from edgepose.cli import main
from edgepose.cli._options import parse_hw


def parse_size(text: str) -> tuple[int, int]:
    """'256x192' -> (256, 192) as (H, W); a single number means a square."""
    return parse_hw(text, "--size", lo=32, example="256x256")


@main.group()
def data():
    """Generate synthetic people data (COCO keypoints format) for training and evaluation."""


@data.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option("--images", "num_images", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--size", default="256x256", show_default=True, help="image size HxW")
@click.option("--max-people", default=4, show_default=True, type=click.IntRange(0))
def synth(out_dir, num_images, seed, size, max_people):
    """Write DIR/images/*.jpg and DIR/annotations.json."""
    from edgepose.data.synthetic import generate_dataset

    ann = generate_dataset(out_dir, num_images, seed, image_size=parse_size(size), max_people=max_people)
    click.echo(f"wrote {num_images} images and {ann}")


@data.command()
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="output .mp4")
@click.option("--frames", default=60, show_default=True, type=click.IntRange(1))
@click.option("--people", default=3, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--size", default="256x256", show_default=True, help="frame size HxW")
@click.option("--fps", default=15.0, show_default=True, type=float)
def clip(out_path, frames, people, seed, size, fps):
    """Write an MP4 with PEOPLE moving people and its COCO JSON (same stem)."""
    from edgepose.data.synthetic import generate_clip

    video, ann = generate_clip(out_path, frames, people, seed, image_size=parse_size(size), fps=fps, progress=True)
    click.echo(f"wrote {video} and {ann}")
