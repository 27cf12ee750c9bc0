"""Backgrounds and image artefacts of the procedural scenes: a smooth colour field with
texture and non-person clutter (:func:`render_background`), then blur, sensor noise and a
JPEG round trip (:func:`degrade`).  NumPy + OpenCV only; deterministic for a given generator.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

SUBPIXEL_SHIFT = 4  # OpenCV sub-pixel bits
SUBPIXEL_SCALE = 1 << SUBPIXEL_SHIFT


def render_background(rng, image_size, clutter=None):
    """Textured background with non-person clutter (uint8 BGR)."""
    H, W = image_size
    g = int(rng.integers(2, 7))
    field = rng.uniform(0, 255, (g, g, 3)).astype(np.float32)
    img = cv2.resize(field, (W, H), interpolation=cv2.INTER_CUBIC)
    kind = rng.random()
    if kind < 0.35:  # tiles / stripes (floors, walls)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        ang, f = rng.uniform(0, np.pi), rng.uniform(0.03, 0.3)
        t = np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * f)
        if rng.random() < 0.5:
            t = t * np.sin((-xx * math.sin(ang) + yy * math.cos(ang)) * f)
        img += (rng.uniform(10, 50) * np.sign(t))[..., None]
    # high-frequency grain
    s = int(rng.integers(1, 5))
    grain = rng.standard_normal((max(2, H // s), max(2, W // s), 1), dtype=np.float32) * np.float32(rng.uniform(3, 25))
    img += cv2.resize(grain, (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    n = int(rng.integers(2, 14)) if clutter is None else clutter
    for _ in range(n):
        _draw_clutter(rng, img)
    return img


def _draw_clutter(rng, img):
    H, W = img.shape[:2]
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    size = float(np.exp(rng.uniform(np.log(5), np.log(max(6, 0.6 * min(H, W))))))
    cx, cy = rng.uniform(-0.1, 1.1) * W, rng.uniform(-0.1, 1.1) * H
    kind = int(rng.integers(0, 5))
    c = (int(cx * SUBPIXEL_SCALE), int(cy * SUBPIXEL_SCALE))
    if kind == 0:
        w2, h2 = size * rng.uniform(0.3, 1), size * rng.uniform(0.3, 1)
        box = cv2.boxPoints(((cx, cy), (w2, h2), rng.uniform(0, 90)))
        cv2.fillPoly(img, [(box * SUBPIXEL_SCALE).astype(np.int32)], colour, cv2.LINE_AA, SUBPIXEL_SHIFT)
    elif kind == 1:
        cv2.circle(img, c, int(size / 2 * SUBPIXEL_SCALE), colour, -1, cv2.LINE_AA, SUBPIXEL_SHIFT)
    elif kind == 2:
        tri = (np.array([cx, cy]) + rng.uniform(-size / 2, size / 2, (3, 2))) * SUBPIXEL_SCALE
        cv2.fillPoly(img, [tri.astype(np.int32)], colour, cv2.LINE_AA, SUBPIXEL_SHIFT)
    elif kind == 3:
        d = rng.uniform(-size, size, 2)
        cv2.line(img, c, (int((cx + d[0]) * SUBPIXEL_SCALE), int((cy + d[1]) * SUBPIXEL_SCALE)), colour,
                 int(rng.integers(1, max(2, int(size / 6)) + 1)), cv2.LINE_AA, SUBPIXEL_SHIFT)
    else:
        axes = (int(size / 2 * SUBPIXEL_SCALE), int(size * rng.uniform(0.1, 0.5) * SUBPIXEL_SCALE))
        cv2.ellipse(img, c, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA, SUBPIXEL_SHIFT)


def degrade(rng, img):
    """Blur, sensor noise and a JPEG round trip."""
    r = rng.random()
    if r < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.3)))
    elif r < 0.5:
        k = int(rng.integers(3, 8))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        kern = cv2.warpAffine(kern, rot, (k, k))
        img = cv2.filter2D(img, -1, kern / max(kern.sum(), 1e-6))
    sigma = float(rng.uniform(0, 8))
    if sigma > 0.5:
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        noise *= sigma
        noise += img
        img = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
    if rng.random() < 0.8:
        q = int(rng.integers(30, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


# ------------------------------------------------------------------------ scenes
