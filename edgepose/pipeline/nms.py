"""Soft-NMS (CenterNet / CornerNet ``external/nms.pyx``) and AlphaPose parametric pose NMS.

NumPy only.  See shared/reference/README.md, "soft_nms quirk" and "Scores and pose NMS".
"""
from __future__ import annotations

import numpy as np

from edgepose.errors import UsageError

__all__ = ["soft_nms", "pose_nms"]


# Port of an official algorithm (CenterNet/CornerNet-Lite external/nms.pyx soft_nms): kept
# in one piece to follow the original line by line, so it is exempt from the 60-line limit.
def soft_nms(boxes, sigma=0.5, Nt=0.5, threshold=0.001, method=2, official_quirk=False):
    """Soft-NMS on rows ``[x1, y1, x2, y2, score, ...]``; returns a new float32 array.

    Re-implements the Cython ``soft_nms`` shared by CenterNet and CornerNet-Lite, in float32
    like the original: rows are sorted by repeatedly picking the maximum; each later row is
    decayed by the picked one (``method`` 2: ``exp(-iou**2 / sigma)``; 1: linear ``1 - iou``
    above ``Nt``; 0: hard NMS at ``Nt``), IoU with the +1 pixel convention; an overlapping
    row whose score drops below ``threshold`` is overwritten by the last live row and the
    live count shrinks (non-overlapping rows are never discarded, whatever their score).

    * default (``official_quirk=False``): returns only the live rows -- the function's keep
      list applied, which is the intended behaviour.
    * ``official_quirk=True``: returns **all** rows as the in-place official function leaves
      them.  Both official callers ignore the keep list, so the tail keeps stale duplicates
      (with older, higher scores) that then take part in the max-100 cut.  Use this to match
      official outputs exactly (golden case ``soft_nms_gaussian``).

    The input is not modified.  Extra columns (CornerNet passes 7) move with their rows; the
    official code moves only the first 5, but callers drop the extra columns afterwards.
    """
    b = np.array(boxes, dtype=np.float32, copy=True)
    if b.size == 0:
        return b.reshape(0, b.shape[1] if b.ndim == 2 else 5)
    if b.ndim != 2 or b.shape[1] < 5:
        raise UsageError(f"soft_nms needs rows [x1, y1, x2, y2, score], got shape {b.shape}")
    if method not in (0, 1, 2):
        raise UsageError(f"soft_nms method must be 0 (hard), 1 (linear) or 2 (gaussian), got {method!r}")
    sig = np.float32(sigma)
    nt = np.float32(Nt)
    thr = np.float32(threshold)
    one = np.float32(1.0)
    n = b.shape[0]
    for i in range(b.shape[0]):  # the official loop bound is the original N; nothing happens once i >= n
        if i >= n:
            break
        maxpos = i + int(np.argmax(b[i:n, 4]))  # first maximum, like the strict '<' scan
        if maxpos != i:
            b[[i, maxpos]] = b[[maxpos, i]]
        if i + 1 >= n:
            continue
        tx1, ty1, tx2, ty2 = b[i, 0], b[i, 1], b[i, 2], b[i, 3]
        cur = b[i + 1:n].copy()  # content before this round's decay
        x1, y1, x2, y2, s = cur[:, 0], cur[:, 1], cur[:, 2], cur[:, 3], cur[:, 4]
        area = (x2 - x1 + one) * (y2 - y1 + one)
        iw = np.minimum(tx2, x2) - np.maximum(tx1, x1) + one
        ih = np.minimum(ty2, y2) - np.maximum(ty1, y1) + one
        hit = (iw > 0) & (ih > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ua = (tx2 - tx1 + one) * (ty2 - ty1 + one) + area - iw * ih
            ov = (iw * ih / ua).astype(np.float32)
        if method == 2:
            weight = np.exp((-(ov * ov) / sig).astype(np.float64)).astype(np.float32)
        elif method == 1:
            weight = np.where(ov > nt, one - ov, one).astype(np.float32)
        else:
            weight = np.where(ov > nt, np.float32(0.0), one).astype(np.float32)
        dec = np.where(hit, weight * s, s).astype(np.float32)

        # Replay the official position walk on indices into `cur`.
        m = len(cur)
        slot = list(range(m))
        stale = {}
        p = 0
        while p < m:
            k = slot[p]
            if hit[k] and dec[k] < thr:  # only overlapping (decayed) rows are ever discarded
                last = slot[m - 1]
                stale[m - 1] = (last, last == k)  # the slot keeps `last` (decayed only if it is k)
                slot[p] = last
                m -= 1
            else:
                p += 1
        for q in range(m):
            b[i + 1 + q] = cur[slot[q]]
            b[i + 1 + q, 4] = dec[slot[q]]
        for q, (k, decayed) in stale.items():
            b[i + 1 + q] = cur[k]
            if decayed:
                b[i + 1 + q, 4] = dec[k]
        n = i + 1 + m
    return b if official_quirk else b[:n].copy()


# ----------------------------------------------------------------------------- pose NMS

# AlphaPose pPose_nms constants
_DELTA1, _MU, _DELTA2, _GAMMA = 1.0, 1.7, 2.65, 22.48
_SCORE_THREDS, _MATCH_THREDS, _ALPHA = 0.3, 5, 0.1


# Port of an official algorithm (AlphaPose pPose_nms.py pose_nms): kept in one piece to
# follow the original step by step, so it is exempt from the 60-line limit.
def pose_nms(boxes, box_scores, coords, joint_scores, area_thres=0.0):
    """AlphaPose parametric pose NMS (``pose_nms`` of the demo).

    ``boxes[N,4]`` detector boxes xyxy, ``box_scores[N]``, ``coords[N,J,2]``,
    ``joint_scores[N,J,1]`` (or ``[N,J]``).  Returns ``(keep, merged_coords[M,J,2],
    merged_scores[M,J,1])`` where ``keep`` are the indices of the picked people (the box and
    box score of a kept person are those of ``boxes[keep]``).

    Steps (README): zero joint scores become 1e-5; ``ref = 0.1*max(w, h)``; greedily pick
    the highest mean joint score; remove every remaining person whose similarity
    ``sum_{d<=1} tanh(s_p)tanh(s_o) + 1.7*sum exp(-d/2.65)`` exceeds 22.48 or who has >= 5
    joints within ``min(ref, 7)`` (the pick itself included); then merge each pick's group
    (joints within ``min(ref, 15)``, score-weighted), skipping picks whose max joint score
    (before or after merging) is < 0.3 or whose ``2.25 * merged box area < area_thres``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    box_scores = np.asarray(box_scores, dtype=np.float32).reshape(-1)
    coords = np.asarray(coords, dtype=np.float32)
    scores = np.array(joint_scores, dtype=np.float32, copy=True)
    n = len(boxes)
    if n == 0:
        j = coords.shape[1] if coords.ndim == 3 else 17
        return np.zeros(0, np.int64), np.zeros((0, j, 2), np.float32), np.zeros((0, j, 1), np.float32)
    if scores.ndim == 3:
        scores = scores[..., 0]
    if coords.shape[:1] != (n,) or coords.ndim != 3 or coords.shape[2] != 2 or scores.shape != coords.shape[:2] \
            or box_scores.shape != (n,):
        raise UsageError(f"pose_nms: inconsistent shapes boxes {boxes.shape}, box_scores {box_scores.shape}, "
                         f"coords {coords.shape}, joint_scores {scores.shape}; expected [N,4], [N], [N,J,2], [N,J,1]")
    scores[scores == 0] = 1e-5
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    ref_dists = _ALPHA * np.maximum(wh[:, 0], wh[:, 1])
    human_scores = scores.mean(axis=1)

    alive = np.ones(n, dtype=bool)
    picks, groups = [], []
    while alive.any():
        ids = np.flatnonzero(alive)
        pick = ids[int(np.argmax(human_scores[ids]))]
        dist = np.sqrt(((coords[pick][None] - coords[ids]) ** 2).sum(axis=2))  # [m, J]
        close = dist <= 1
        score_d = np.where(close, np.tanh(scores[pick][None] / _DELTA1) * np.tanh(scores[ids] / _DELTA1), 0.0)
        simi = score_d.sum(axis=1) + _MU * np.exp(-dist / _DELTA2).sum(axis=1)
        matches = (dist / min(ref_dists[pick], 7.0) <= 1).sum(axis=1)
        delete = ids[(simi > _GAMMA) | (matches >= _MATCH_THREDS)]
        if delete.size == 0:
            delete = np.array([pick])
        picks.append(pick)
        groups.append(delete)
        alive[delete] = False

    keep, out_coords, out_scores = [], [], []
    for pick, group in zip(picks, groups):
        if scores[pick].max() < _SCORE_THREDS:
            continue
        dist = np.sqrt(((coords[pick][None] - coords[group]) ** 2).sum(axis=2))  # [g, J]
        mask = dist <= min(ref_dists[pick], 15.0)
        masked = scores[group] * mask
        with np.errstate(divide="ignore", invalid="ignore"):
            normed = masked / masked.sum(axis=0, keepdims=True)
        merged_pose = (coords[group] * normed[..., None]).sum(axis=0)
        merged_score = (masked * normed).sum(axis=0)
        if not merged_score.max() >= _SCORE_THREDS:
            continue
        span = merged_pose.max(axis=0) - merged_pose.min(axis=0)
        if 1.5 ** 2 * span[0] * span[1] < area_thres:
            continue
        keep.append(pick)
        out_coords.append(merged_pose)
        out_scores.append(merged_score[:, None])
    j = coords.shape[1]
    if not keep:
        return np.zeros(0, np.int64), np.zeros((0, j, 2), np.float32), np.zeros((0, j, 1), np.float32)
    return (np.asarray(keep, dtype=np.int64), np.stack(out_coords).astype(np.float32),
            np.stack(out_scores).astype(np.float32))
