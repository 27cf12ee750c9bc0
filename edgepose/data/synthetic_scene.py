"""Rendering of the procedural people scenes (see :mod:`edgepose.data.synthetic` for the
conventions): kinematic skeletons, drawn bodies, backgrounds with clutter, image artefacts,
and :func:`render_scene`.  NumPy + OpenCV only; deterministic for a given generator.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from edgepose.data.synthetic_background import SUBPIXEL_SCALE, SUBPIXEL_SHIFT, degrade, render_background

NUM_KP = 17
# part labels in a person's part map
_SHIRT, _SKIN, _PANTS, _HAIR, _SHOES, _EYE, _MOUTH = 1, 2, 3, 4, 5, 6, 7

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


def clip_to_limit(value, name):
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
        "lean": clip_to_limit(rng.normal(0, 10), "lean"),
        "neck": clip_to_limit(rng.normal(0, 9), "neck"),
        "yaw": clip_to_limit(rng.normal(0, 0.2), "yaw"),
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
        p[f"shoulder_{side}"] = clip_to_limit(sh, "shoulder")
        p[f"elbow_{side}"] = clip_to_limit(el, "elbow")
        p[f"hip_{side}"] = clip_to_limit(rng.uniform(-8, 30) if rng.random() < 0.8 else rng.uniform(20, 55), "hip")
        p[f"knee_{side}"] = clip_to_limit(rng.uniform(-15, 20) if rng.random() < 0.75 else rng.uniform(10, 75), "knee")
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
    return (int(round((pt[0] - origin[0]) * SUBPIXEL_SCALE)), int(round((pt[1] - origin[1]) * SUBPIXEL_SCALE)))


def _draw_person_parts(p, kp, pts, image_size):
    """Part map of one person in its ROI: returns (parts uint8 (h, w), (x0, y0)) or None."""
    h = p["height"]
    at = max(2, int(round(p["arm_thick"] * h * p["build"])))
    lt = max(2, int(round(p["leg_thick"] * h * p["build"])))
    rx, ry = p["head_rx"] * h, p["head_ry"] * h
    roi = _person_roi(kp, pts, image_size, max(at, lt) + max(rx, ry) * 0.2 + 3, rx, ry)
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    o = (x0, y0)
    parts = np.zeros((y1 - y0, x1 - x0), np.uint8)
    line = lambda a, b, v, t: cv2.line(parts, _fx(a, o), _fx(b, o), v, t, cv2.LINE_8, SUBPIXEL_SHIFT)  # noqa: E731
    disc = lambda c, r, v: cv2.circle(parts, _fx(c, o), max(1, int(round(r * SUBPIXEL_SCALE))), v, -1, cv2.LINE_8, SUBPIXEL_SHIFT)  # noqa: E731
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
    cv2.fillPoly(parts, [quad], _SHIRT, cv2.LINE_8, SUBPIXEL_SHIFT)
    disc(kp[11], lt / 2, _PANTS)
    disc(kp[12], lt / 2, _PANTS)
    # neck + head (+ hair on top, ears, face)
    line(pts["neck"], pts["head"], _SKIN, max(2, int(rx * 0.9)))
    ang = pts["head_angle"]
    axes = (max(1, int(round(rx * SUBPIXEL_SCALE))), max(1, int(round(ry * SUBPIXEL_SCALE))))
    cv2.ellipse(parts, _fx(pts["head"], o), axes, ang, 0, 360, _SKIN, -1, cv2.LINE_8, SUBPIXEL_SHIFT)
    cv2.ellipse(parts, _fx(pts["head"], o), axes, ang, 180, 360, _HAIR, -1, cv2.LINE_8, SUBPIXEL_SHIFT)
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
    # every keypoint lies on the silhouette (guaranteed, whatever the thickness rounding)
    for i in list(range(5, NUM_KP)) + list(range(5)):
        xi, yi = int(round(kp[i, 0])) - x0, int(round(kp[i, 1])) - y0
        if 0 <= yi < parts.shape[0] and 0 <= xi < parts.shape[1] and parts[yi, xi] == 0:
            parts[yi, xi] = _SKIN
    return parts, o


def _person_roi(kp, pts, image_size, margin, rx, ry):
    """``(x0, y0, x1, y1)`` around every drawn point plus ``margin``, clipped to the image;
    None when nothing of the person is inside."""
    H, W = image_size
    allp = np.vstack([kp, pts["hand_l"], pts["hand_r"], pts["foot_l"], pts["foot_r"],
                      pts["head"][None] + [[-rx, -ry], [rx, ry]]])
    x0 = int(max(0, math.floor(allp[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(allp[:, 1].min() - margin)))
    x1 = int(min(W, math.ceil(allp[:, 0].max() + margin) + 1))
    y1 = int(min(H, math.ceil(allp[:, 1].max() + margin) + 1))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


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
