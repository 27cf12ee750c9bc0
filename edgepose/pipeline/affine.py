"""The affine helper shared by CenterNet and AlphaPose (``get_affine_transform``).

Official semantics (shared/reference/README.md, "Shared affine helper"):

* ``scale`` is a scalar ``s`` or ``[sw, sh]``; **only the width entry is used**, so the map is
  a similarity with factor ``k = W / sw`` (``sh`` is ignored).
* With ``rot=0`` the result is ``[[k, 0, W/2 - k*cx], [0, k, H/2 - k*cy]]``.
* ``inv=True`` returns the inverse map (output pixels -> source pixels).
* No half-pixel adjustment anywhere; points are mapped as plain ``(x, y, 1)`` products.

Like the official code we build three float32 point pairs and let OpenCV solve the 2x3
matrix, so the matrices (and therefore ``cv2.warpAffine`` results) agree with the official
ones to the last bits.
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError

__all__ = ["get_affine_transform", "affine_points"]


def _rotate(point, rot_rad):
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return np.array([point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs], dtype=np.float64)


def _third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(center, scale, rot=0, output_size=(512, 512), inv=False):
    """2x3 float64 matrix mapping source pixels into an ``output_size=(W, H)`` window.

    ``center=(cx, cy)`` in source pixels; ``scale`` scalar or ``[sw, sh]`` (only ``sw`` is
    used, as officially); ``rot`` in degrees.  ``inv=True`` gives the inverse mapping.
    """
    import cv2

    center = np.asarray(center, dtype=np.float32).reshape(-1)
    if center.shape != (2,):
        raise UsageError(f"center must be (cx, cy), got shape {center.shape}; pass two numbers")
    scale_arr = np.asarray(scale, dtype=np.float32).reshape(-1)
    if scale_arr.size == 1:
        scale_arr = np.array([scale_arr[0], scale_arr[0]], dtype=np.float32)
    if scale_arr.size != 2:
        raise UsageError(f"scale must be a scalar or [sw, sh], got {scale!r}")
    if not np.isfinite(scale_arr[0]) or scale_arr[0] <= 0:
        raise UsageError(f"scale width must be a positive number, got {scale_arr[0]!r}; "
                         "check the box or image size you passed")
    try:
        dst_w, dst_h = float(output_size[0]), float(output_size[1])
    except (TypeError, IndexError):
        raise UsageError(f"output_size must be (W, H), got {output_size!r}") from None

    src_w = float(scale_arr[0])
    rot_rad = np.pi * rot / 180.0
    src_dir = _rotate([0.0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0.0, dst_w * -0.5], dtype=np.float32)

    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(dst, src).astype(np.float64)
    return cv2.getAffineTransform(src, dst).astype(np.float64)


def affine_points(points, M):
    """Apply a 2x3 affine ``M`` to ``points[..., 2]`` (plain ``(x, y, 1)`` products)."""
    pts = np.asarray(points, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    if pts.shape[-1:] != (2,):
        raise UsageError(f"points must have a last dimension of 2 (x, y), got shape {pts.shape}")
    if M.shape != (2, 3):
        raise UsageError(f"affine matrix must be 2x3, got shape {M.shape}")
    return pts @ M[:, :2].T + M[:, 2]
