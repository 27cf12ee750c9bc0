"""Procedural people: images with exact COCO keypoint ground truth (NumPy + OpenCV only).

No trained weights or COCO images can be downloaded where edgepose is developed, so the
default models are trained and evaluated on these scenes.  Everything is deterministic:
the same seed gives the same bytes.

    rng = np.random.default_rng(0)
    image, people = render_scene(rng, (256, 256), num_people=3)
    ann = generate_dataset("data/synth", num_images=500, seed=0)      # COCO keypoints JSON
    video, ann = generate_clip("clip.mp4", num_frames=60, num_people=3, seed=1)

How a scene is made
  * background: smooth colour field + high-frequency texture (+ stripes/tiles), then
    non-person clutter (rectangles, discs, triangles, sticks) with their own textures;
  * people: a 2D kinematic skeleton (torso lean, neck, shoulder/elbow, hip/knee angles
    clipped to anatomical limits, optional foreshortening) drawn as filled polygons,
    thick rounded limbs and ellipses with per-person colours, patterns and shading.
    Smaller (farther) people are drawn first; heights span ~40 px to the full frame;
  * artefacts: Gaussian or motion blur, sensor noise, a JPEG round trip.

Conventions
  * People face the camera, so a person's *left* side (COCO ``left_*`` keypoints) is on the
    image's right; the face (eyes, nose, mouth) and the hair make the facing unambiguous.
  * Coordinates are OpenCV pixel coordinates (pixel ``i`` is centred on ``i``).
  * Visibility from the drawing order: 2 = visible, 1 = hidden under a later-drawn person,
    0 = outside the image (stored as ``x = y = 0`` like COCO).
  * ``mask`` is the person's whole drawn silhouette (clipped to the image), ``visible_mask``
    what is left after later people are drawn.  ``bbox`` is tight around ``mask`` and
    ``area`` is its pixel count, so every labelled keypoint (v > 0) lies in its box.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np

from edgepose.metadata import COCO_KEYPOINTS, COCO_SKELETON

NUM_KP = 17
# part labels in a person's part map
_SHIRT, _SKIN, _PANTS, _HAIR, _SHOES, _EYE, _MOUTH = 1, 2, 3, 4, 5, 6, 7
_SHIFT = 4  # OpenCV sub-pixel bits
_SCALE = 1 << _SHIFT

# joint limits in degrees (outward positive; see _pose_points)
LIMITS = {
    "lean": (-35.0, 35.0),          # torso from vertical
    "neck": (-25.0, 25.0),          # head relative to torso
    "yaw": (-0.45, 0.45),           # head turn (fraction of head radius)
    "shoulder": (-25.0, 170.0),     # upper arm abduction from the torso axis
    "elbow": (-150.0, 25.0),        # forearm relative to upper arm (negative: inward/up)
    "hip": (-15.0, 55.0),           # thigh abduction
    "knee": (-20.0, 75.0),          # shin relative to thigh (positive: towards the midline)
}


def _clip(value, name):
    lo, hi = LIMITS[name]
    return float(min(max(value, lo), hi))


def _dir(deg):
    """Unit vector at ``deg`` from straight down, positive towards the image's right."""
    a = math.radians(deg)
    return np.array([math.sin(a), math.cos(a)])


# ----------------------------------------------------------------------------- people
def sample_person(rng, image_size, height=None, center=None):
    """Random appearance + pose for one person (a dict of plain numbers/arrays)."""
    H, W = image_size
    if height is None:
        height = float(np.exp(rng.uniform(np.log(40.0), np.log(max(41.0, 1.0 * H)))))
    var = lambda: float(rng.uniform(0.92, 1.08))  # noqa: E731
    p = {
        "height": float(height),
        "center": np.array(center if center is not None else
                           [rng.uniform(0.1, 0.9) * W, rng.uniform(0.15, 0.85) * H], dtype=np.float64),
        # proportions (fractions of the height)
        "torso": 0.30 * var(), "shoulder_w": 0.105 * var(), "hip_w": 0.075 * var(),
        "neck_len": 0.045 * var(), "head_rx": 0.058 * var(), "head_ry": 0.072 * var(),
        "upper_arm": 0.165 * var(), "forearm": 0.15 * var(),
        "thigh": 0.245 * var(), "shin": 0.24 * var(),
        "arm_thick": 0.05 * var(), "leg_thick": 0.075 * var(), "build": float(rng.uniform(0.8, 1.25)),
        # pose (degrees)
        "lean": _clip(rng.normal(0, 10), "lean"),
        "neck": _clip(rng.normal(0, 9), "neck"),
        "yaw": _clip(rng.normal(0, 0.2), "yaw"),
        "fore": [float(rng.uniform(0.6, 1.0)) if rng.random() < 0.25 else 1.0 for _ in range(4)],
    }
    for side in ("l", "r"):
        mode = rng.random()
        if mode < 0.45:   # arm down-ish
            sh, el = rng.uniform(-10, 40), rng.uniform(-60, 20)
        elif mode < 0.8:  # arm out / raised
            sh, el = rng.uniform(30, 170), rng.uniform(-150, 25)
        else:             # hand to chest / face
            sh, el = rng.uniform(-25, 60), rng.uniform(-150, -80)
        p[f"shoulder_{side}"] = _clip(sh, "shoulder")
        p[f"elbow_{side}"] = _clip(el, "elbow")
        p[f"hip_{side}"] = _clip(rng.uniform(-8, 30) if rng.random() < 0.8 else rng.uniform(20, 55), "hip")
        p[f"knee_{side}"] = _clip(rng.uniform(-15, 20) if rng.random() < 0.75 else rng.uniform(10, 75), "knee")
    # appearance (BGR)
    skin = _skin_colour(rng)
    p["palette"] = np.zeros((8, 3), np.float32)
    p["palette"][_SHIRT] = _hsv_colour(rng)
    p["palette"][_SKIN] = skin
    p["palette"][_PANTS] = _hsv_colour(rng, vmax=200)
    p["palette"][_HAIR] = rng.uniform(10, 90, 3) if rng.random() < 0.8 else rng.uniform(90, 220, 3)
    p["palette"][_SHOES] = rng.uniform(10, 120, 3)
    p["palette"][_EYE] = rng.uniform(0, 40, 3)
    p["palette"][_MOUTH] = skin * 0.55
    p["pattern"] = int(rng.integers(0, 4))      # flat / stripes / checks / noise
    p["pattern_amp"] = float(rng.uniform(0.05, 0.35))
    p["pattern_freq"] = float(rng.uniform(0.15, 0.6))
    p["pattern_angle"] = float(rng.uniform(0, np.pi))
    p["light"] = float(rng.uniform(0, 2 * np.pi))
    p["light_amp"] = float(rng.uniform(0.0, 0.3))
    p["noise_seed"] = int(rng.integers(0, 2**31 - 1))
    p["short_sleeves"] = bool(rng.random() < 0.35)
    p["shorts"] = bool(rng.random() < 0.25)
    return p


def _skin_colour(rng):
    t = rng.random()
    dark, light = np.array([45, 65, 95]), np.array([175, 200, 235])
    return (dark + t * (light - dark) + rng.normal(0, 8, 3)).clip(0, 255).astype(np.float32)


def _hsv_colour(rng, vmax=255):
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(30, 256), rng.integers(40, vmax + 1)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def pose_points(p):
    """Keypoints (17, 2) plus the extra points used for drawing (dict name -> (2,))."""
    h = p["height"]
    down = _dir(p["lean"])
    up = -down
    right = np.array([down[1], -down[0]])  # image-right axis of the torso
    # body laid out around pelvis = 0, then shifted so the figure's centre sits at `center`
    pelvis = np.zeros(2)
    neck = pelvis + up * p["torso"] * h
    pts = {"pelvis": pelvis, "neck": neck}
    kp = np.zeros((NUM_KP, 2))
    for side, s, i_sh, i_el, i_wr, i_hip, i_kn, i_an, k in (
            ("l", +1, 5, 7, 9, 11, 13, 15, 0), ("r", -1, 6, 8, 10, 12, 14, 16, 2)):
        shoulder = neck - up * 0.03 * h + right * s * p["shoulder_w"] * h * p["build"]
        a_up = p["lean"] + s * p[f"shoulder_{side}"]
        elbow = shoulder + _dir(a_up) * p["upper_arm"] * h * p["fore"][k]
        a_fore = a_up + s * p[f"elbow_{side}"]
        wrist = elbow + _dir(a_fore) * p["forearm"] * h
        hip = pelvis + right * s * p["hip_w"] * h * p["build"]
        a_thigh = 0.4 * p["lean"] + s * p[f"hip_{side}"]
        knee = hip + _dir(a_thigh) * p["thigh"] * h * p["fore"][k + 1]
        a_shin = a_thigh - s * p[f"knee_{side}"]
        ankle = knee + _dir(a_shin) * p["shin"] * h
        kp[i_sh], kp[i_el], kp[i_wr], kp[i_hip], kp[i_kn], kp[i_an] = shoulder, elbow, wrist, hip, knee, ankle
        pts[f"hand_{side}"] = wrist + _dir(a_fore) * 0.035 * h
        pts[f"foot_{side}"] = ankle + _dir(a_shin + s * 70) * 0.04 * h
    head_down = _dir(p["lean"] + p["neck"])
    head_up, head_right = -head_down, np.array([head_down[1], -head_down[0]])
    rx, ry = p["head_rx"] * h, p["head_ry"] * h
    head = neck + head_up * (p["neck_len"] * h + ry * 0.9)
    yaw = p["yaw"]
    kp[0] = head + head_right * yaw * rx * 0.9 - head_up * 0.15 * ry              # nose
    kp[1] = head + head_right * (0.42 + yaw * 0.8) * rx + head_up * 0.15 * ry     # left eye
    kp[2] = head + head_right * (-0.42 + yaw * 0.8) * rx + head_up * 0.15 * ry    # right eye
    kp[3] = head + head_right * (0.92 + yaw * 0.15) * rx + head_up * 0.02 * ry    # left ear
    kp[4] = head + head_right * (-0.92 + yaw * 0.15) * rx + head_up * 0.02 * ry   # right ear
    pts["head"] = head
    pts["mouth"] = head + head_right * yaw * rx * 0.8 - head_up * 0.5 * ry
    pts["head_angle"] = math.degrees(math.atan2(head_right[1], head_right[0]))
    # centre the figure's extent on p["center"]
    allp = np.vstack([kp, head + head_up * ry, pts["foot_l"], pts["foot_r"]])
    offset = p["center"] - (allp.min(0) + allp.max(0)) / 2
    kp += offset
    for name, val in pts.items():
        if isinstance(val, np.ndarray):
            pts[name] = val + offset
    return kp, pts


def _fx(pt, origin):
    return (int(round((pt[0] - origin[0]) * _SCALE)), int(round((pt[1] - origin[1]) * _SCALE)))


def _draw_person_parts(p, kp, pts, image_size):
    """Part map of one person in its ROI: returns (parts uint8 (h, w), (x0, y0)) or None."""
    H, W = image_size
    h = p["height"]
    at = max(2, int(round(p["arm_thick"] * h * p["build"])))
    lt = max(2, int(round(p["leg_thick"] * h * p["build"])))
    rx, ry = p["head_rx"] * h, p["head_ry"] * h
    margin = max(at, lt) + max(rx, ry) * 0.2 + 3
    allp = np.vstack([kp, pts["hand_l"], pts["hand_r"], pts["foot_l"], pts["foot_r"],
                      pts["head"][None] + [[-rx, -ry], [rx, ry]]])
    x0 = int(max(0, math.floor(allp[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(allp[:, 1].min() - margin)))
    x1 = int(min(W, math.ceil(allp[:, 0].max() + margin) + 1))
    y1 = int(min(H, math.ceil(allp[:, 1].max() + margin) + 1))
    if x1 <= x0 or y1 <= y0:
        return None
    o = (x0, y0)
    parts = np.zeros((y1 - y0, x1 - x0), np.uint8)
    line = lambda a, b, v, t: cv2.line(parts, _fx(a, o), _fx(b, o), v, t, cv2.LINE_8, _SHIFT)  # noqa: E731
    disc = lambda c, r, v: cv2.circle(parts, _fx(c, o), max(1, int(round(r * _SCALE))), v, -1, cv2.LINE_8, _SHIFT)  # noqa: E731
    # legs
    for side, i_hip, i_kn, i_an in (("l", 11, 13, 15), ("r", 12, 14, 16)):
        line(kp[i_hip], kp[i_kn], _PANTS, lt)
        disc(kp[i_kn], lt / 2, _PANTS)
        line(kp[i_kn], kp[i_an], _SKIN if p["shorts"] else _PANTS, max(2, int(lt * 0.8)))
        line(kp[i_an], pts[f"foot_{side}"], _SHOES, max(2, int(lt * 0.7)))
        disc(kp[i_an], max(1.0, lt * 0.4), _SHOES)
    # torso: shoulders -> hips quad, widened by half a limb
    sh_l, sh_r, hp_l, hp_r = kp[5], kp[6], kp[11], kp[12]
    wid = (sh_l - sh_r) / (np.linalg.norm(sh_l - sh_r) + 1e-6) * at * 0.5
    hwid = (hp_l - hp_r) / (np.linalg.norm(hp_l - hp_r) + 1e-6) * lt * 0.5
    quad = np.array([_fx(sh_l + wid, o), _fx(hp_l + hwid, o), _fx(hp_r - hwid, o), _fx(sh_r - wid, o)], np.int32)
    cv2.fillPoly(parts, [quad], _SHIRT, cv2.LINE_8, _SHIFT)
    disc(kp[11], lt / 2, _PANTS)
    disc(kp[12], lt / 2, _PANTS)
    # neck + head (+ hair on top, ears, face)
    line(pts["neck"], pts["head"], _SKIN, max(2, int(rx * 0.9)))
    ang = pts["head_angle"]
    axes = (max(1, int(round(rx * _SCALE))), max(1, int(round(ry * _SCALE))))
    cv2.ellipse(parts, _fx(pts["head"], o), axes, ang, 0, 360, _SKIN, -1, cv2.LINE_8, _SHIFT)
    cv2.ellipse(parts, _fx(pts["head"], o), axes, ang, 180, 360, _HAIR, -1, cv2.LINE_8, _SHIFT)
    for i in (3, 4):
        disc(kp[i], max(1.0, rx * 0.22), _SKIN)
    for i in (1, 2):
        disc(kp[i], max(0.6, rx * 0.14), _EYE)
    disc(kp[0], max(0.6, rx * 0.12), _MOUTH)
    line(pts["mouth"] - [rx * 0.25, 0], pts["mouth"] + [rx * 0.25, 0], _MOUTH, max(1, int(rx * 0.1)))
    # arms in front
    for side, i_sh, i_el, i_wr in (("l", 5, 7, 9), ("r", 6, 8, 10)):
        disc(kp[i_sh], at / 2, _SHIRT)
        line(kp[i_sh], kp[i_el], _SHIRT, at)
        disc(kp[i_el], at / 2, _SKIN if p["short_sleeves"] else _SHIRT)
        line(kp[i_el], kp[i_wr], _SKIN if p["short_sleeves"] else _SHIRT, max(2, int(at * 0.9)))
        line(kp[i_wr], pts[f"hand_{side}"], _SKIN, max(2, int(at * 0.9)))
        disc(kp[i_wr], max(1.0, at * 0.45), _SKIN)
    # every joint keypoint lies on the silhouette (guaranteed, whatever the thickness rounding)
    for i in range(5, NUM_KP):
        xi, yi = int(round(kp[i, 0])) - x0, int(round(kp[i, 1])) - y0
        if 0 <= yi < parts.shape[0] and 0 <= xi < parts.shape[1] and parts[yi, xi] == 0:
            parts[yi, xi] = _SKIN
    for i in range(5):
        xi, yi = int(round(kp[i, 0])) - x0, int(round(kp[i, 1])) - y0
        if 0 <= yi < parts.shape[0] and 0 <= xi < parts.shape[1] and parts[yi, xi] == 0:
            parts[yi, xi] = _SKIN
    return parts, o


def _pattern(p, shape):
    h, w = shape
    kind = p["pattern"]
    if kind == 0:
        return None
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 1:
        t = xx * math.cos(p["pattern_angle"]) + yy * math.sin(p["pattern_angle"])
        return np.sign(np.sin(t * p["pattern_freq"] * 2.0)).astype(np.float32)
    if kind == 2:
        f = p["pattern_freq"]
        return (np.sign(np.sin(xx * f)) * np.sign(np.sin(yy * f))).astype(np.float32)
    rs = np.random.default_rng(p["noise_seed"])
    small = rs.uniform(-1, 1, (max(2, h // 4), max(2, w // 4))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _paint_person(image, p, parts, origin):
    """Composite one person's part map onto ``image`` in place."""
    x0, y0 = origin
    h, w = parts.shape
    roi = image[y0:y0 + h, x0:x0 + w]
    colour = p["palette"][parts]                     # (h, w, 3)
    pat = _pattern(p, parts.shape)
    if pat is not None:
        cloth = ((parts == _SHIRT) | (parts == _PANTS)).astype(np.float32)
        colour *= (1.0 + p["pattern_amp"] * pat * cloth)[..., None]
    if p["light_amp"] > 0:
        yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        colour *= (1.0 + p["light_amp"] * (xx * math.cos(p["light"]) + yy * math.sin(p["light"])))[..., None]
    sel = parts > 0
    roi[sel] = np.clip(colour[sel], 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------ background
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
    c = (int(cx * _SCALE), int(cy * _SCALE))
    if kind == 0:
        w2, h2 = size * rng.uniform(0.3, 1), size * rng.uniform(0.3, 1)
        box = cv2.boxPoints(((cx, cy), (w2, h2), rng.uniform(0, 90)))
        cv2.fillPoly(img, [(box * _SCALE).astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)
    elif kind == 1:
        cv2.circle(img, c, int(size / 2 * _SCALE), colour, -1, cv2.LINE_AA, _SHIFT)
    elif kind == 2:
        tri = (np.array([cx, cy]) + rng.uniform(-size / 2, size / 2, (3, 2))) * _SCALE
        cv2.fillPoly(img, [tri.astype(np.int32)], colour, cv2.LINE_AA, _SHIFT)
    elif kind == 3:
        d = rng.uniform(-size, size, 2)
        cv2.line(img, c, (int((cx + d[0]) * _SCALE), int((cy + d[1]) * _SCALE)), colour,
                 int(rng.integers(1, max(2, int(size / 6)) + 1)), cv2.LINE_AA, _SHIFT)
    else:
        axes = (int(size / 2 * _SCALE), int(size * rng.uniform(0.1, 0.5) * _SCALE))
        cv2.ellipse(img, c, axes, rng.uniform(0, 180), 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)


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
def _approx_box(p):
    kp, pts = pose_points(p)
    allp = np.vstack([kp, pts["foot_l"], pts["foot_r"]])
    return np.concatenate([allp.min(0), allp.max(0)])


def _coverage(a, b):
    """Fraction of box a covered by box b."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max(1e-6, (a[2] - a[0]) * (a[3] - a[1]))
    return iw * ih / area


def sample_people(rng, image_size, num_people, max_cover=0.5, tries=12):
    """``num_people`` persons, back (small) to front (large), placed so no earlier person's
    box is more than ``max_cover`` hidden by a later one when that can be arranged."""
    H, W = image_size
    hi = max(41.0, min(H, 1.0 * H * (1.6 / math.sqrt(max(1, num_people)))))
    lo = min(40.0, hi - 1)
    heights = np.sort(np.exp(rng.uniform(np.log(lo), np.log(hi), num_people)))
    people, boxes = [], []
    for hgt in heights:
        best, best_cov = None, 2.0
        for _ in range(tries):
            p = sample_person(rng, image_size, height=hgt)
            box = _approx_box(p)
            cov = max([_coverage(b, box) for b in boxes], default=0.0)
            if cov < best_cov:
                best, best_cov = (p, box), cov
            if cov <= max_cover:
                break
        people.append(best[0])
        boxes.append(best[1])
    return people


def render_people(background, people):
    """Draw ``people`` (in order) on a copy of ``background``; returns (image, annotations)."""
    img = background.copy()
    H, W = img.shape[:2]
    drawn = []
    for p in people:
        kp, pts = pose_points(p)
        res = _draw_person_parts(p, kp, pts, (H, W))
        if res is None:
            drawn.append((kp, None, None))
            continue
        parts, o = res
        _paint_person(img, p, parts, o)
        drawn.append((kp, parts > 0, o))
    # visibility: a keypoint is hidden if any later person covers its pixel
    later = np.zeros((H, W), bool)
    anns = [None] * len(drawn)
    for idx in range(len(drawn) - 1, -1, -1):
        kp, local, o = drawn[idx]
        mask = np.zeros((H, W), bool)
        if local is not None:
            mask[o[1]:o[1] + local.shape[0], o[0]:o[0] + local.shape[1]] = local
        anns[idx] = _annotate(kp, mask, later, (H, W))
        later |= mask
    return img, [a for a in anns if a is not None]


def _annotate(kp, mask, later, image_size):
    H, W = image_size
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    out = np.zeros((NUM_KP, 3), np.float64)
    for i, (x, y) in enumerate(kp):
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= xi < W and 0 <= yi < H):
            continue
        v = 1 if later[yi, xi] else 2
        out[i] = (min(max(x, bx0), bx1), min(max(y, by0), by1), v)
    return {
        "bbox": [float(bx0), float(by0), float(bx1 - bx0), float(by1 - by0)],
        "keypoints": out,
        "num_keypoints": int((out[:, 2] > 0).sum()),
        "area": float(mask.sum()),
        "iscrowd": 0,
        "category_id": 1,
        "mask": mask,
        "visible_mask": mask & ~later,
    }


def render_scene(rng, image_size=(256, 256), num_people=None, max_people=4, degrade_image=True):
    """One image with ``num_people`` people (random 0..max_people when None).

    Returns ``(image_bgr uint8 (H, W, 3), people)``; each person is a dict with ``bbox``
    ``[x, y, w, h]``, ``keypoints`` (17, 3) ``x, y, v``, ``num_keypoints``, ``area``,
    ``iscrowd``, ``category_id``, ``mask`` and ``visible_mask`` (bool (H, W)), in drawing
    order (back to front).  People entirely outside the image are omitted.
    """
    image_size = tuple(int(v) for v in image_size)
    if num_people is None:
        num_people = int(rng.integers(0, max_people + 1))
    bg = render_background(rng, image_size)
    people = sample_people(rng, image_size, num_people)
    img, anns = render_people(bg, people)
    if degrade_image:
        img = degrade(rng, img)
    return img, anns


# ------------------------------------------------------------------------ COCO files
def coco_categories():
    return [{"id": 1, "name": "person", "supercategory": "person",
             "keypoints": list(COCO_KEYPOINTS),
             "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON]}]


def coco_annotation(person, ann_id, image_id):
    kp = person["keypoints"]
    return {
        "id": int(ann_id), "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
        "bbox": [round(float(v), 2) for v in person["bbox"]],
        "area": float(person["area"]),
        "keypoints": [round(float(v), 2) if j % 3 < 2 else int(v) for j, v in enumerate(kp.reshape(-1))],
        "num_keypoints": int(person["num_keypoints"]),
    }


def _image_rng(seed, index):
    return np.random.default_rng([int(seed), int(index)])


def generate_dataset(out_dir, num_images, seed, image_size=(256, 256), max_people=4, progress=True,
                     jpeg_quality=95):
    """Write ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``; returns the JSON path.

    Image ``i`` depends only on ``(seed, i)``, so a larger set extends a smaller one.
    """
    from tqdm import tqdm

    from edgepose.io_utils import atomic_path

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    H, W = (int(v) for v in image_size)
    for i in tqdm(range(int(num_images)), desc="synth images", unit="img", disable=not progress):
        rng = _image_rng(seed, i)
        img, people = render_scene(rng, (H, W), max_people=max_people)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(out / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        image_id = i + 1
        images.append({"id": image_id, "file_name": name, "height": H, "width": W})
        for p in people:
            annotations.append(coco_annotation(p, len(annotations) + 1, image_id))
    doc = {
        "info": {"description": "edgepose synthetic people", "seed": int(seed),
                 "generator": "edgepose.data.synthetic", "max_people": int(max_people)},
        "images": images, "annotations": annotations, "categories": coco_categories(),
    }
    ann = out / "annotations.json"
    with atomic_path(ann) as tmp:
        Path(tmp).write_text(json.dumps(doc))
    return ann


# ------------------------------------------------------------------------ clips
def _animate(p0, motion, t, image_size):
    """Person ``p0`` at time ``t`` (seconds): sinusoidal joint motion within the limits,
    the body drifting and bouncing off the image borders."""
    H, W = image_size
    p = dict(p0)
    for name, (amp, freq, phase) in motion["joints"].items():
        base = name.split("_")[0]
        p[name] = _clip(p0[name] + amp * math.sin(2 * math.pi * freq * t + phase), base)
    pos = p0["center"] + motion["velocity"] * t
    lo = np.array([0.1 * W, 0.15 * H])
    span = np.array([0.8 * W, 0.7 * H])
    rel = (pos - lo) % (2 * span)          # reflect at the borders
    rel = np.where(rel > span, 2 * span - rel, rel)
    p["center"] = lo + rel
    return p


def generate_clip(out_path, num_frames, num_people, seed, image_size=(256, 256), fps=15, progress=False,
                  person_heights=None, background_seed=None):
    """Write an MP4 clip with exactly ``num_people`` moving people and its COCO JSON.

    ``person_heights=(lo, hi)``: people's standing heights in pixels, uniform in that range
    (e.g. a fixed camera's distance band); default: the still images' 40 px .. frame rule.
    ``background_seed``: draw the background from its own seed, so clips with different
    ``seed`` (other people, other motion) can show the same fixed scene.

    Returns ``(video_path, ann_path)``; the JSON (``<stem>.json`` beside the video) has one
    image entry per frame (``frame_index``) with the people's boxes and keypoints.
    """
    from tqdm import tqdm

    from edgepose.io_utils import atomic_path

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    H, W = (int(v) for v in image_size)
    rng = np.random.default_rng(int(seed))
    bg_rng = rng if background_seed is None else np.random.default_rng([int(background_seed), 3])
    bg = render_background(bg_rng, (H, W))
    if person_heights is None:
        people = sample_people(rng, (H, W), int(num_people))
    else:
        heights = np.sort(rng.uniform(float(person_heights[0]), float(person_heights[1]), int(num_people)))
        people = [sample_person(rng, (H, W), height=h) for h in heights]
    motions = []
    for _ in people:
        joints = {}
        for name in ("lean", "neck", "shoulder_l", "shoulder_r", "elbow_l", "elbow_r",
                     "hip_l", "hip_r", "knee_l", "knee_r"):
            amp = {"lean": 6, "neck": 10}.get(name, 25)
            joints[name] = (float(rng.uniform(0.3, 1) * amp), float(rng.uniform(0.2, 1.0)),
                            float(rng.uniform(0, 2 * np.pi)))
        speed = rng.uniform(0.02, 0.15) * min(H, W)  # px / s
        ang = rng.uniform(0, 2 * np.pi)
        motions.append({"joints": joints, "velocity": speed * np.array([math.cos(ang), math.sin(ang)])})
    frame_rngs = np.random.default_rng([int(seed), 1])
    images, annotations = [], []
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix or '.mp4'}")
    ok = False
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (W, H))
        if not writer.isOpened():
            from edgepose.errors import DependencyError
            raise DependencyError("OpenCV cannot write MP4 (mp4v) here; install opencv-python-headless>=4.8")
        try:
            for f in tqdm(range(int(num_frames)), desc="synth clip", unit="frame", disable=not progress):
                t = f / float(fps)
                cur = [_animate(p, m, t, (H, W)) for p, m in zip(people, motions)]
                img, anns = render_people(bg, cur)
                img = _light_degrade(frame_rngs, img)
                writer.write(img)
                images.append({"id": f + 1, "file_name": f"{out_path.name}#{f:06d}", "frame_index": f,
                               "height": H, "width": W})
                for a in anns:
                    annotations.append(coco_annotation(a, len(annotations) + 1, f + 1))
        finally:
            writer.release()
        os.replace(tmp, out_path)
        ok = True
    finally:
        if not ok and tmp.exists():
            tmp.unlink()
    doc = {"info": {"description": "edgepose synthetic clip", "seed": int(seed), "fps": float(fps),
                    "num_people": int(num_people), "video": out_path.name},
           "images": images, "annotations": annotations, "categories": coco_categories()}
    ann = out_path.with_suffix(".json")
    with atomic_path(ann) as tmp:
        Path(tmp).write_text(json.dumps(doc))
    return out_path, ann


def _light_degrade(rng, img):
    noise = rng.standard_normal(img.shape, dtype=np.float32)
    noise *= 2.0
    noise += img
    return np.clip(noise, 0, 255, out=noise).astype(np.uint8)


def scene_with_people(seed, num_people, image_size=(256, 256)):
    """A deterministic image with exactly ``num_people`` people (for latency-vs-persons)."""
    rng = np.random.default_rng([int(seed), int(num_people), 7])
    return render_scene(rng, image_size, num_people=num_people)
