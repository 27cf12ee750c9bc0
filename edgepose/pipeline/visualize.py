"""Overlay: person boxes, COCO skeleton, joint dots, scores and FPS on a BGR frame (OpenCV)."""
from __future__ import annotations

import numpy as np

from edgepose.metadata import COCO_SKELETON

# BGR colours: left side blue-ish, right side orange-ish, centre green
_LEFT, _RIGHT, _MID = (255, 128, 0), (0, 128, 255), (0, 255, 0)
_BOX = (0, 220, 255)


def _joint_colour(j: int):
    if j == 0:
        return _MID
    return _LEFT if j % 2 == 1 else _RIGHT  # COCO: odd ids are left joints


def _limb_colour(a: int, b: int):
    sides = {_joint_colour(a), _joint_colour(b)}
    return sides.pop() if len(sides) == 1 else _MID


def draw_poses(frame, result, fps: float | None = None, kp_threshold: float = 0.2,
               skeleton=COCO_SKELETON, copy: bool = True):
    """Draw ``result`` (a :class:`~edgepose.pipeline.pipeline.PoseResult`) on ``frame``.

    Joints with a score below ``kp_threshold`` and limbs touching them are not drawn.
    Returns the drawn image (a copy unless ``copy=False``).
    """
    import cv2

    image = frame.copy() if copy else frame
    h, w = image.shape[:2]
    thick = max(1, int(round(max(h, w) / 400)))
    font = 0.4 * max(1.0, max(h, w) / 640)
    if fps is not None:  # first, so people drawn later stay visible
        text = f"FPS {fps:.1f}  persons {len(result)}"
        scale, org = font * 1.5, (8, int(24 * font / 0.4))
        # a dark box behind the text: a thicker black outline would be wider than the white
        # glyphs (Hershey advances grow with thickness) and look doubled
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.rectangle(image, (org[0] - 4, org[1] - th - 4), (org[0] + tw + 4, org[1] + base + 2), (0, 0, 0), -1)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    for i in range(len(result)):
        x1, y1, x2, y2 = (int(round(v)) for v in result.boxes[i])
        cv2.rectangle(image, (x1, y1), (x2, y2), _BOX, thick)
        label = f"{float(result.box_scores[i]):.2f}"
        if result.scores is not None and len(result.scores) > i:
            label += f" / {float(result.scores[i]):.2f}"
        cv2.putText(image, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, font, _BOX, thick,
                    cv2.LINE_AA)
        pts = np.asarray(result.keypoints[i], np.float64)
        sc = np.asarray(result.keypoint_scores[i], np.float64).reshape(-1)
        visible = (sc >= kp_threshold) & np.isfinite(pts).all(axis=1)
        for a, b in skeleton:
            if a < len(pts) and b < len(pts) and visible[a] and visible[b]:
                pa = tuple(int(round(v)) for v in pts[a])
                pb = tuple(int(round(v)) for v in pts[b])
                cv2.line(image, pa, pb, _limb_colour(a, b), thick + 1, cv2.LINE_AA)
        for j in np.flatnonzero(visible):
            cv2.circle(image, tuple(int(round(v)) for v in pts[j]), thick + 2, _joint_colour(int(j)), -1,
                       cv2.LINE_AA)
    return image
