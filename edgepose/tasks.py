"""The table of task specs: what each task's model looks like and how it is fed and decoded.

One row per :data:`edgepose.metadata.TASKS` entry (``ctdet`` CenterNet, ``sppe`` top-down
pose, ``cornernet`` CornerNet-Squeeze): its role in the pipeline, input normalisation, raw
heads, host-side decoder, optional in-graph decoder and the input-size rule.  Model
metadata for zoo models (:func:`model_meta_fields`) and for bare ONNX files
(:func:`guess_task`, :func:`bare_meta_fields`) is built from this table, and callers ask
it (``task_spec(meta.task).role == "detector"``) instead of comparing task names.

Bottom layer: imports only the metadata constants and errors.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgepose.errors import MetadataError
from edgepose.metadata import (
    ALPHAPOSE_MEAN_RGB,
    COCO_FLIP_PAIRS,
    COCO_KEYPOINTS,
    COCO_MEAN_BGR,
    COCO_STD_BGR,
    TASKS,
)


@dataclass(frozen=True)
class TaskSpec:
    """One row of the table.

    ``role``: ``detector`` or ``pose``; ``host_decoder``: the NumPy decoder the pipeline runs
    on raw heads; ``graph_decoder``: name of the in-graph decoder export can append (None:
    none exists) and ``graph_outputs`` its outputs; ``input_multiple``: H and W must be
    multiples of it; ``count_field``: the ModelMeta-sized quantity (classes or joints) and
    ``default_count`` its usual value; ``heads``: ``(name, activation)`` of the raw heads,
    ``"*"`` channels standing for the count; ``trainer``: the ``edgepose train`` command
    that trains this task (None: not trainable here).
    """

    name: str
    role: str
    channel_order: str
    mean: tuple
    std: tuple
    head_stride: int
    heads: tuple  # ((name, channels or "*", activation), ...)
    count_field: str
    default_count: int
    host_decoder: str
    graph_decoder: str | None = None
    graph_outputs: tuple = ()
    input_multiple: int = 1
    trainer: str | None = None  # the `edgepose train` command for this task (None: not trainable)
    canvas_step: int | None = None  # dynamic-size input sides are k * canvas_step + canvas_offset
    canvas_offset: int = 0

    def canvas_side(self, side: int) -> int:
        """Network input side the detector's own preprocessing makes of a ``side``-pixel frame
        side (CenterNet keep_res ``(n | 31) + 1``, CornerNet ``n | 127``)."""
        return (int(side) // self.canvas_step + 1) * self.canvas_step + self.canvas_offset

    def largest_canvas_side(self, bound: int) -> int:
        """Largest input side of that form that is <= ``bound``."""
        return (int(bound) - self.canvas_offset) // self.canvas_step * self.canvas_step + self.canvas_offset

    def normalisation(self) -> dict:
        return {"channel_order": self.channel_order, "mean": self.mean, "std": self.std}

    def head_table(self, count: int) -> dict:
        """name -> {"channels", "stride", "activation"} with ``count`` classes or joints."""
        return {name: {"channels": count if channels == "*" else channels, "stride": self.head_stride,
                       "activation": activation} for name, channels, activation in self.heads}


TASK_SPECS = {
    "ctdet": TaskSpec(
        "ctdet", "detector", "BGR", COCO_MEAN_BGR, COCO_STD_BGR, 4,
        (("hm", "*", "sigmoid"), ("wh", 2, None), ("reg", 2, None)), "num_classes", 80,
        host_decoder="ctdet_decode", graph_decoder="ctdet_topk", graph_outputs=("dets",), input_multiple=32,
        trainer="det", canvas_step=32),
    "sppe": TaskSpec(
        "sppe", "pose", "RGB", ALPHAPOSE_MEAN_RGB, (1.0, 1.0, 1.0), 4, (("heatmaps", "*", None),),
        "num_joints", 17, host_decoder="heatmap_to_coords", graph_decoder="sppe_argmax",
        graph_outputs=("coords", "scores"), trainer="pose"),
    "cornernet": TaskSpec(
        "cornernet", "detector", "BGR", COCO_MEAN_BGR, COCO_STD_BGR, 8,
        (("tl_heat", "*", "sigmoid"), ("br_heat", "*", "sigmoid"), ("tl_tag", 1, None), ("br_tag", 1, None),
         ("tl_regr", 2, None), ("br_regr", 2, None)), "num_classes", 80, host_decoder="cornernet_decode",
        canvas_step=128, canvas_offset=-1),
}
assert tuple(TASK_SPECS) == TASKS, "one spec per task of edgepose.metadata.TASKS"


def task_spec(task: str) -> TaskSpec:
    try:
        return TASK_SPECS[task]
    except KeyError:
        raise MetadataError(f"unknown task {task!r}; expected one of {', '.join(TASK_SPECS)}") from None


def model_meta_fields(task: str, count: int | None = None) -> dict:
    """ModelMeta fields (normalisation, heads, classes, keypoints) of a ``task`` model with
    ``count`` classes (detectors) or joints (pose; default 17)."""
    spec = task_spec(task)
    count = int(spec.default_count if count is None else count)
    heads = spec.head_table(count)
    fields = {**spec.normalisation(), "heads": heads, "output_names": list(heads)}
    if spec.role == "pose":
        fields.update(num_classes=1, keypoint_names=COCO_KEYPOINTS[:count],
                      flip_pairs=COCO_FLIP_PAIRS if count == len(COCO_KEYPOINTS) else ())
    else:
        fields["num_classes"] = count
    return fields


def guess_task(output_names) -> tuple:
    """``(task, in-graph decoder or None)`` of a model without edgepose metadata, told by its
    output names; None when they fit no task."""
    names = set(output_names)
    if {"hm", "wh"} <= names:
        return "ctdet", None
    for spec in TASK_SPECS.values():
        if spec.graph_outputs and set(spec.graph_outputs) <= names:
            return spec.name, spec.graph_decoder
    if any(n.startswith("tl_") for n in names):
        return "cornernet", None
    if len(names) == 1:
        return "sppe", None
    return None


def bare_meta_fields(task: str, output_names) -> dict:
    """ModelMeta fields for a bare file of ``task`` whose outputs are ``output_names``: the
    task's normalisation; pose files get 17 COCO joints, CenterNet files heads named after
    their outputs (channels unknown)."""
    spec = task_spec(task)
    fields = spec.normalisation()
    if spec.role == "pose":
        fields.update(model_meta_fields(task))
        del fields["output_names"]
    elif spec.name == "ctdet":
        fields["heads"] = {n: {"channels": None, "stride": spec.head_stride,
                               "activation": "sigmoid" if n == "hm" else None} for n in output_names}
    return fields
