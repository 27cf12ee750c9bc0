"""The built-in default models: a slim person-only CenterNet and a slim SimplePose.

Both are members of the zoo families (same module classes, same state_dict layout as the
official ResNet models, only narrower), trained on the procedural people set by
``recipes/train_defaults.sh``; their weights ship in ``edgepose/models/weights/``.

    from edgepose.models.defaults import default_model_paths
    det_onnx, pose_onnx = default_model_paths()     # exported once, cached by weight hash

``default_model_paths`` exports the shipped weights with :func:`edgepose.export.torch2onnx`
into ``$EDGEPOSE_CACHE`` (or ``~/.cache/edgepose``) on first use; the file names carry the
SHA-256 of the weights, so new weights are re-exported automatically.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from edgepose.errors import CheckpointError, DependencyError, UsageError

log = logging.getLogger("edgepose")

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# architecture of the defaults (change together with the weights and the recipe)
DEFAULT_DET = dict(num_layers=18, dcn=False, num_classes=1, head_conv=32, widths=(16, 32, 64, 128),
                   deconv_planes=(64, 32, 32))
DEFAULT_DET_INPUT = (256, 256)
DEFAULT_POSE = dict(num_layers=18, num_joints=17, deconv_filters=(128, 64, 64), widths=(32, 64, 128, 256))
DEFAULT_POSE_INPUT = (128, 96)

# what the defaults are, said wherever they are used (CLI notice, --help, README)
SYNTHETIC_NOTICE = ("They are trained on synthetic people: they show the pipeline working but will not find "
                    "real people reliably. For real footage export real models (edgepose export "
                    "centernet_resdcn18 --weights ctdet_coco_resdcn18.pth --out det.onnx; edgepose export "
                    "fastpose_res50 --weights fast_res50_256x192.pth --out pose.onnx) and pass "
                    "--det det.onnx --pose pose.onnx.")

__all__ = ["default_det", "default_pose", "default_weights", "default_model_paths", "resolve_models", "cache_dir",
           "DEFAULT_DET", "DEFAULT_POSE", "DEFAULT_DET_INPUT", "DEFAULT_POSE_INPUT", "SYNTHETIC_NOTICE"]


def default_det(num_classes: int = 1):
    """Slim CenterNet ResNet-18 (msra deconv head), person only, 256x256 input."""
    from edgepose.models.centernet_resnet import centernet_resnet

    return centernet_resnet(**{**DEFAULT_DET, "num_classes": num_classes})


def default_pose(num_joints: int = 17):
    """Slim SimplePose ResNet-18, 17 COCO joints, 128x96 input (32x24 heatmaps)."""
    from edgepose.models.alphapose import simplepose

    return simplepose(**{**DEFAULT_POSE, "num_joints": num_joints})


def default_weights(name: str) -> Path:
    """Path of the shipped weights of ``default_det`` / ``default_pose``."""
    if name not in ("default_det", "default_pose"):
        raise CheckpointError(f"no shipped weights for {name!r}; defaults are default_det and default_pose")
    path = WEIGHTS_DIR / f"{name}.pth"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from this installation; reinstall edgepose or rebuild the "
                              "defaults with recipes/train_defaults.sh")
    return path


def cache_dir(path=None) -> Path:
    """``path`` or ``$EDGEPOSE_CACHE`` or ``~/.cache/edgepose``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("EDGEPOSE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgepose"


_cache_root = cache_dir


def default_model_paths(cache_dir=None, force: bool = False):
    """``(det_onnx, pose_onnx)``: the default models as ONNX, exported on first use.

    Files are ``<cache>/<name>-<sha256[:16] of the weights>.onnx``; an existing file is reused,
    so replacing the weights triggers a fresh export.  The detector is exported with batch 1,
    the pose model with a dynamic batch.  Exporting needs torch (only the first time).
    """
    from edgepose.io_utils import sha256_file

    root = _cache_root(cache_dir)
    out = []
    for name, batch in (("default_det", 1), ("default_pose", "dynamic")):
        weights = default_weights(name)
        digest = sha256_file(weights)[:16]
        path = root / f"{name}-{digest}.onnx"
        if force or not path.is_file():
            try:
                import torch  # noqa: F401
            except ImportError:
                raise DependencyError(
                    f"exporting the default model {name} to ONNX needs torch, which is not installed. "
                    "Install it (pip install 'edgepose[torch]'), or pass your own ONNX files with --det/--pose") from None
            from edgepose.export import torch2onnx

            root.mkdir(parents=True, exist_ok=True)
            # writes atomically and raises ExportError when ONNX Runtime disagrees with torch
            torch2onnx(name, path, weights=str(weights), batch=batch)
        out.append(path)
    return tuple(out)


def resolve_models(det=None, pose=None, cache_dir=None) -> tuple:
    """``(det, pose)`` with each one not given replaced by the built-in default model's ONNX
    file (:func:`default_model_paths`; trained on synthetic people, for demos and tests, not
    for real footage).  Given paths are returned as ``Path`` unchanged.  Raises UsageError
    naming ``--det``/``--pose`` when the defaults cannot be had here (weights missing, or torch
    missing for their first export)."""
    if det is not None and pose is not None:
        return Path(det), Path(pose)
    try:
        default_det_path, default_pose_path = default_model_paths(cache_dir)
    except (CheckpointError, DependencyError) as exc:
        raise UsageError(f"the built-in default models are unavailable ({exc}); pass --det DET.onnx and "
                         "--pose POSE.onnx instead") from None
    log.info("using the built-in default %s (trained on synthetic people, not for real footage)",
             " and ".join(role for role, given in (("detector", det), ("pose model", pose)) if given is None))
    return Path(det) if det is not None else default_det_path, Path(pose) if pose is not None else default_pose_path
