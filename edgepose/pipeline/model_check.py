"""Shape checks when a Pipeline is built: refuse models whose outputs cannot be what their
metadata says, instead of decoding them into plausible-looking garbage.

Only static dimensions are checked (a dynamic axis, ``None``, passes here); the decoded
keypoint count is checked again on the first real output (:func:`check_joint_count`).
"""
from __future__ import annotations

from edgepose.errors import MetadataError

_CORNER_HEADS = (("tl_heat", "tl_heats"), ("br_heat", "br_heats"))


def _dim(shape, axis):
    """Static size of ``axis`` (negative allowed) or None when dynamic / out of range."""
    try:
        value = shape[axis]
    except IndexError:
        return None
    return value if isinstance(value, int) and value >= 0 else None  # -1 / None / "n": dynamic


def _shape_text(shape) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def num_joints_of(meta) -> int:
    """Joints the pose metadata promises: its keypoint names, else the heatmap head's channels, else 17."""
    head = (meta.heads or {}).get("heatmaps") or {}
    return len(meta.keypoint_names) or int(head.get("channels") or 17)


def _check_image_input(runner, role: str):
    spec = runner.inputs[0] if runner.inputs else None
    if spec is None:
        raise MetadataError(f"{runner.name} ({role}) has no input; pass a model file exported by `edgepose export`")
    channels = _dim(spec.shape, 1)
    if len(spec.shape) != 4 or (channels is not None and channels != 3):
        raise MetadataError(f"{runner.name} ({role}) takes input {spec.name!r} of shape {_shape_text(spec.shape)}, "
                            "not an NCHW colour image (Nx3xHxW); this is not a model for the pipeline")


def check_pose_model(runner, meta) -> int:
    """Raise MetadataError unless ``runner`` outputs heatmaps (or in-graph keypoints) for the
    number of joints ``meta`` says; return that number."""
    _check_image_input(runner, "pose")
    joints = num_joints_of(meta)
    outputs = {o.name: o.shape for o in runner.outputs}
    hint = (f"the metadata says {joints} joints{' (COCO)' if joints == 17 else ''}; pass a FastPose/SimplePose "
            "model exported with `edgepose export` as --pose")
    if meta.decode == "sppe_argmax":
        missing = [n for n in ("coords", "scores") if n not in outputs]
        if missing:
            raise MetadataError(f"{runner.name} decodes keypoints in the graph but has no {missing} output "
                                f"(outputs: {sorted(outputs)}); re-export it with `edgepose export --decode`")
        got = _dim(outputs["coords"], -2)
        if (got is not None and got != joints) or _dim(outputs["coords"], -1) not in (None, 2):
            raise MetadataError(f"{runner.name} outputs keypoints of shape {_shape_text(outputs['coords'])}, "
                                f"not Nx{joints}x2; {hint}")
        return joints
    if "heatmaps" in outputs:
        name = "heatmaps"
    elif len(outputs) == 1:
        name = next(iter(outputs))
    else:
        raise MetadataError(f"{runner.name}: no heatmap output among {sorted(outputs)}; {hint}")
    shape = outputs[name]
    got = _dim(shape, 1)
    if len(shape) != 4 or (got is not None and got != joints):
        raise MetadataError(f"{runner.name} is not a {joints}-joint pose model: its output {name!r} has shape "
                            f"{_shape_text(shape)} (want Nx{joints}xHxW heatmaps); {hint}")
    return joints


def check_detector_model(runner, meta):
    """Raise MetadataError unless ``runner``'s outputs fit a CenterNet / CornerNet detector."""
    _check_image_input(runner, "detector")
    outputs = {o.name: o.shape for o in runner.outputs}
    hint = "pass a CenterNet or CornerNet-Squeeze model exported with `edgepose export` as --det"
    if meta.task == "cornernet":
        for names in _CORNER_HEADS:
            if not any(n in outputs for n in names):
                raise MetadataError(f"{runner.name}: CornerNet output {names[0]!r} missing (outputs: "
                                    f"{sorted(outputs)}); {hint}")
        return
    if meta.decode == "ctdet_topk":
        shape = outputs.get("dets")
        if shape is None or len(shape) != 3 or _dim(shape, -1) not in (None, 6):
            raise MetadataError(f"{runner.name}: the in-graph decoder must output dets [1,K,6] (x1, y1, x2, y2, "
                                f"score, class); outputs are {_describe(outputs)}; {hint}")
        return
    if meta.decode is not None:
        return  # an unknown decoder is reported when the first frame is decoded
    want = {"hm": None, "wh": 2, "reg": 2}
    for name, channels in want.items():
        if name not in outputs:
            if name == "reg":
                continue  # CenterNet without offsets
            raise MetadataError(f"{runner.name}: CenterNet output {name!r} missing (outputs: {sorted(outputs)}); "
                                f"{hint}")
        shape = outputs[name]
        got = _dim(shape, 1)
        if len(shape) != 4 or (channels is not None and got is not None and got != channels):
            raise MetadataError(f"{runner.name}: CenterNet output {name!r} has shape {_shape_text(shape)}, want "
                                f"Nx{channels or 'C'}xHxW; {hint}")
    classes = _dim(outputs["hm"], 1)
    if classes is not None and classes <= int(meta.person_class):
        raise MetadataError(f"{runner.name}: output 'hm' has {classes} class channel(s) but the person class is "
                            f"index {meta.person_class}; {hint}")


def _describe(outputs) -> str:
    return ", ".join(f"{n} {_shape_text(s)}" for n, s in outputs.items())


def check_joint_count(runner, coords, joints: int):
    """The decoded keypoints of the first frames must have ``joints`` joints."""
    got = int(coords.shape[1]) if getattr(coords, "ndim", 0) >= 2 else -1
    if got != joints:
        raise MetadataError(f"{runner.name} produced {got} keypoints per person, but its metadata says {joints}; "
                            "pass a pose model exported with `edgepose export` as --pose")
