"""Procedural people: images with exact COCO keypoint ground truth (NumPy + OpenCV only).

No trained weights or COCO images can be downloaded where edgepose is developed, so the
default models are trained and evaluated on these scenes.  Everything is deterministic:
the same seed gives the same bytes.

    rng = np.random.default_rng(0)
    image, people = render_scene(rng, (256, 256), num_people=3)
    ann = generate_dataset("data/synth", num_images=500, seed=0)      # COCO keypoints JSON
    video, ann = generate_clip("clip.mp4", num_frames=60, num_people=3, seed=1)

How a scene is made (rendering lives in :mod:`edgepose.data.synthetic_scene`; this module
writes the COCO datasets and clips)
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

from edgepose.io_checks import video_writer_error
from edgepose.data.synthetic_background import render_background
from edgepose.data.synthetic_scene import (
    LIMITS,
    NUM_KP,
    clip_to_limit,
    pose_points,
    render_people,
    render_scene,
    sample_people,
    sample_person,
)
from edgepose.metadata import COCO_KEYPOINTS, COCO_SKELETON

__all__ = ["LIMITS", "NUM_KP", "pose_points", "sample_person", "render_scene", "generate_dataset", "generate_clip",
           "scene_with_people", "coco_categories", "coco_annotation"]


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


def _write_jpeg(path: Path, img, quality: int):
    """Encode in memory, write whole (a full disk is a one-line OutputError, not a cut file)."""
    from edgepose.io_utils import atomic_path

    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name} as JPEG")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data.tobytes())


def generate_dataset(out_dir, num_images, seed, image_size=(256, 256), max_people=4, progress=True,
                     jpeg_quality=95):
    """Write ``out_dir/images/*.jpg`` and ``out_dir/annotations.json``; returns the JSON path.

    Image ``i`` depends only on ``(seed, i)``, so a larger set extends a smaller one.  The
    images and their annotations are one output: they are written into a hidden stage and
    swapped in together (a full disk or Ctrl-C leaves ``out_dir`` as it was); a previous set
    in ``out_dir`` is replaced whole, other files there are kept.
    """
    import shutil

    from tqdm import tqdm

    from edgepose.io_utils import atomic_path
    from edgepose.outputs import staged_dir

    H, W = (int(v) for v in image_size)
    with staged_dir(out_dir) as out:
        shutil.rmtree(out / "images", ignore_errors=True)  # links to the old set: its files stay intact
        (out / "images").mkdir()
        images, annotations = [], []
        for i in tqdm(range(int(num_images)), desc="synth images", unit="img", disable=not progress):
            img, people = render_scene(_image_rng(seed, i), (H, W), max_people=max_people)
            name = f"{i:06d}.jpg"
            _write_jpeg(out / "images" / name, img, jpeg_quality)
            images.append({"id": i + 1, "file_name": name, "height": H, "width": W})
            for p in people:
                annotations.append(coco_annotation(p, len(annotations) + 1, i + 1))
        doc = {
            "info": {"description": "edgepose synthetic people", "seed": int(seed),
                     "generator": "edgepose.data.synthetic", "max_people": int(max_people)},
            "images": images, "annotations": annotations, "categories": coco_categories(),
        }
        with atomic_path(out / "annotations.json") as tmp:
            Path(tmp).write_text(json.dumps(doc))
    return Path(out_dir) / "annotations.json"


# ------------------------------------------------------------------------ clips
def _animate(p0, motion, t, image_size):
    """Person ``p0`` at time ``t`` (seconds): sinusoidal joint motion within the limits,
    the body drifting and bouncing off the image borders."""
    H, W = image_size
    p = dict(p0)
    for name, (amp, freq, phase) in motion["joints"].items():
        base = name.split("_")[0]
        p[name] = clip_to_limit(p0[name] + amp * math.sin(2 * math.pi * freq * t + phase), base)
    pos = p0["center"] + motion["velocity"] * t
    lo = np.array([0.1 * W, 0.15 * H])
    span = np.array([0.8 * W, 0.7 * H])
    rel = (pos - lo) % (2 * span)          # reflect at the borders
    rel = np.where(rel > span, 2 * span - rel, rel)
    p["center"] = lo + rel
    return p


def _sample_motion(rng, image_size) -> dict:
    """Joint oscillations (amplitude, frequency, phase) and a drift velocity for one person."""
    joints = {}
    for name in ("lean", "neck", "shoulder_l", "shoulder_r", "elbow_l", "elbow_r",
                 "hip_l", "hip_r", "knee_l", "knee_r"):
        amp = {"lean": 6, "neck": 10}.get(name, 25)
        joints[name] = (float(rng.uniform(0.3, 1) * amp), float(rng.uniform(0.2, 1.0)),
                        float(rng.uniform(0, 2 * np.pi)))
    speed = rng.uniform(0.02, 0.15) * min(image_size)  # px / s
    ang = rng.uniform(0, 2 * np.pi)
    return {"joints": joints, "velocity": speed * np.array([math.cos(ang), math.sin(ang)])}


def _clip_people(rng, image_size, num_people, person_heights=None) -> list:
    """The clip's people: the still images' size rule, or heights uniform in ``person_heights``."""
    if person_heights is None:
        return sample_people(rng, image_size, num_people)
    heights = np.sort(rng.uniform(float(person_heights[0]), float(person_heights[1]), num_people))
    return [sample_person(rng, image_size, height=h) for h in heights]


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
    people = _clip_people(rng, (H, W), int(num_people), person_heights)
    motions = [_sample_motion(rng, (H, W)) for _ in people]
    frame_rngs = np.random.default_rng([int(seed), 1])
    images, annotations = [], []
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix or '.mp4'}")
    ok = False
    try:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (W, H))
        if not writer.isOpened():
            raise video_writer_error(out_path, "mp4v", option="--out")
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
