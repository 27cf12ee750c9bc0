"""COCO-format person data for training: loading, augmentation and target generation.

Works on any directory holding ``annotations.json`` (COCO instances/keypoints format) and the
images it names (looked up as ``DIR/images/<file_name>``, then ``DIR/<file_name>``): the
synthetic people set (``edgepose data synth``) or real COCO (``--ann``/``--images``).

Only the person category is used (``category_id`` 1 unless told otherwise); crowd regions
are skipped.  Geometry goes through the runtime's own helpers
(:func:`edgepose.pipeline.affine.get_affine_transform`, ``box_to_center_scale``,
``normalize_to_chw``) so a model sees at training time exactly what the runtime feeds it:

* detector: BGR, ``/255``, COCO mean/std (CenterNet); random scale/shift affine, flip, colour
  jitter; gaussian centre heatmaps with CenterNet's ``gaussian_radius`` (min overlap 0.7),
  ``wh``/``reg`` targets at the centre indices (as in CenterNet's ``ctdet`` dataset);
* SPPE: RGB, ``/255``, AlphaPose mean subtraction (no std); crops around jittered ground-truth
  boxes with the official centre/scale rule (aspect ``W/H``, x1.25) plus random scale,
  rotation and flip (joint pairs swapped); gaussian joint heatmaps at stride 4 with target
  weights from visibility.

Everything here is NumPy/OpenCV; the datasets return NumPy arrays (the trainers stack them).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgepose.data.coco import find_image, image_roots, read_coco_json
from edgepose.errors import UsageError
from edgepose.metadata import COCO_FLIP_PAIRS

__all__ = [
    "CocoPeople",
    "gaussian_radius",
    "draw_gaussian",
    "ctdet_targets",
    "joint_heatmaps",
    "color_jitter",
    "DetDataset",
    "PoseDataset",
]


# ----------------------------------------------------------------------------- annotations


class CocoPeople:
    """Person annotations of a COCO-format directory, grouped per image.

    ``images``: list of dicts ``{"id", "file_name", "width", "height", "path"}``;
    ``anns[image_id]``: list of annotation dicts (non-crowd persons only).
    ``cache=True`` keeps decoded images in memory (the synthetic sets are small).
    """

    def __init__(self, data_dir=None, ann_file=None, image_dir=None, category_id: int = 1, cache: bool = True):
        if data_dir is None and ann_file is None:
            raise UsageError("pass a data directory (with annotations.json and images/) or an annotation file")
        data_dir = Path(data_dir) if data_dir is not None else None
        ann_file = Path(ann_file) if ann_file is not None else data_dir / "annotations.json"
        coco = read_coco_json(ann_file, error=UsageError,
                              how="point --data at a folder with annotations.json and images/ "
                                  "(make one with `edgepose data synth --out DIR`)")
        base = data_dir if data_dir is not None else ann_file.parent
        roots = ([Path(image_dir)] if image_dir is not None else []) + image_roots(base / "annotations.json")
        self.category_id = int(category_id)
        self.images = [{"id": img["id"], "file_name": img["file_name"], "width": img.get("width"),
                        "height": img.get("height"), "path": find_image(img["file_name"], roots)}
                       for img in coco["images"]]
        self.anns = {img["id"]: [] for img in self.images}
        for ann in coco["annotations"]:
            if ann.get("category_id", 1) == self.category_id and not ann.get("iscrowd", 0) \
                    and ann["image_id"] in self.anns:
                self.anns[ann["image_id"]].append(ann)
        self._cache = {} if cache else None

    def __len__(self):
        return len(self.images)

    def load_image(self, index: int) -> np.ndarray:
        """BGR uint8 image ``index``."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        import cv2

        path = self.images[index]["path"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise UsageError(f"cannot read image {path}; check the images/ folder next to annotations.json")
        if self._cache is not None:
            self._cache[index] = image
        return image

    def boxes(self, index: int) -> np.ndarray:
        """Person boxes of image ``index`` as ``[N, 4]`` xyxy float32."""
        anns = self.anns[self.images[index]["id"]]
        out = np.zeros((len(anns), 4), np.float32)
        for i, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            out[i] = (x, y, x + w, y + h)
        return out

    def people(self, min_keypoints: int = 1, min_size: float = 4.0):
        """``[(image_index, ann)]`` of every person usable for pose training."""
        out = []
        for index, img in enumerate(self.images):
            for ann in self.anns[img["id"]]:
                kps = ann.get("keypoints")
                if not kps or ann.get("num_keypoints", sum(1 for v in kps[2::3] if v > 0)) < min_keypoints:
                    continue
                if ann["bbox"][2] < min_size or ann["bbox"][3] < min_size:
                    continue
                out.append((index, ann))
        return out


# ----------------------------------------------------------------------------- targets


def gaussian_radius(det_size, min_overlap: float = 0.7) -> float:
    """CenterNet's radius rule for a box of ``det_size = (height, width)`` (output-map pixels).

    The smallest of the three radii for which a corner-shifted box still has IoU >=
    ``min_overlap`` with the ground truth (the three quadratic cases of CornerNet, with
    CenterNet's form of the roots).
    """
    height, width = float(det_size[0]), float(det_size[1])
    a1 = 1.0
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2 = 4.0
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, center, radius: int) -> np.ndarray:
    """Element-wise max of ``heatmap`` with a gaussian of ``sigma = (2r+1)/6`` at integer ``center``.

    The peak value is exactly 1 (CenterNet's ``draw_umich_gaussian``); in place, returns it.
    """
    radius = max(0, int(radius))
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if right <= 0 or bottom <= 0 or left < 0 or top < 0:
        return heatmap
    patch = heatmap[y - top:y + bottom, x - left:x + right]
    gpatch = g[radius - top:radius + bottom, radius - left:radius + right]
    if patch.size and gpatch.size:
        np.maximum(patch, gpatch.astype(heatmap.dtype), out=patch)
    return heatmap


def ctdet_targets(boxes_out: np.ndarray, classes, num_classes: int, out_size, max_objs: int = 64):
    """CenterNet training targets from boxes already in output-map pixels (``[N, 4]`` xyxy).

    Boxes are clipped to the map; empty ones are dropped.  Returns a dict of
    ``hm [C, H, W]``, ``wh [K, 2]``, ``reg [K, 2]``, ``ind [K]`` (int64 ``y*W + x``) and
    ``reg_mask [K]`` (uint8), with ``K = max_objs``.
    """
    out_h, out_w = int(out_size[0]), int(out_size[1])
    hm = np.zeros((num_classes, out_h, out_w), np.float32)
    wh = np.zeros((max_objs, 2), np.float32)
    reg = np.zeros((max_objs, 2), np.float32)
    ind = np.zeros((max_objs,), np.int64)
    reg_mask = np.zeros((max_objs,), np.uint8)
    k = 0
    for box, cls in zip(np.asarray(boxes_out, np.float32).reshape(-1, 4), classes):
        if k >= max_objs:
            break
        box = box.copy()
        box[[0, 2]] = np.clip(box[[0, 2]], 0, out_w - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, out_h - 1)
        h, w = box[3] - box[1], box[2] - box[0]
        if h <= 0 or w <= 0:
            continue
        radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)))))
        ct = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32)
        ct_int = ct.astype(np.int32)
        draw_gaussian(hm[int(cls)], ct_int, radius)
        wh[k] = (w, h)
        ind[k] = ct_int[1] * out_w + ct_int[0]
        reg[k] = ct - ct_int
        reg_mask[k] = 1
        k += 1
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": reg_mask}


def joint_heatmaps(joints_hm: np.ndarray, visible: np.ndarray, out_size, sigma: float):
    """Gaussian joint heatmaps ``[J, H, W]`` and target weights ``[J]``.

    ``joints_hm``: ``[J, 2]`` joint positions in heatmap pixels (input pixels / stride).  Each
    gaussian is centred at the (sub-pixel) joint position, so its peak lies on the nearest
    heatmap pixel; the weight is 1 for a labelled joint (``visible``) whose nearest pixel lies on
    the map, else 0 and its map stays empty.
    """
    out_h, out_w = int(out_size[0]), int(out_size[1])
    num = len(joints_hm)
    target = np.zeros((num, out_h, out_w), np.float32)
    weight = np.zeros((num,), np.float32)
    xs = np.arange(out_w, dtype=np.float32)[None, :]
    ys = np.arange(out_h, dtype=np.float32)[:, None]
    for j in range(num):
        if not visible[j]:
            continue
        mx, my = float(joints_hm[j, 0]), float(joints_hm[j, 1])
        if not (-0.5 <= mx < out_w - 0.5 and -0.5 <= my < out_h - 0.5):
            continue  # the peak pixel would be off the map: no supervision for this joint
        target[j] = np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / (2 * sigma * sigma))
        weight[j] = 1.0
    return target, weight


# ----------------------------------------------------------------------------- augmentation


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.4) -> np.ndarray:
    """Random brightness, contrast and saturation (factors in ``1 +- strength``) on a uint8 image."""
    img = image.astype(np.float32)
    ops = rng.permutation(3)
    for op in ops:
        alpha = 1.0 + rng.uniform(-strength, strength)
        if op == 0:  # brightness
            img *= alpha
        elif op == 1:  # contrast
            img = img * alpha + (1 - alpha) * img.mean()
        else:  # saturation
            grey = img.mean(axis=2, keepdims=True)
            img = img * alpha + (1 - alpha) * grey
    return np.clip(img, 0, 255).astype(np.uint8)


def _rng(seed, index, epoch):
    return np.random.default_rng([int(seed), int(epoch), int(index)])


# ----------------------------------------------------------------------------- datasets


class DetDataset:
    """CenterNet ctdet samples: ``(input [3,H,W] float32, targets dict)``.

    ``meta``: the detector's :class:`~edgepose.metadata.ModelMeta` (input size, normalisation,
    ``num_classes``).  ``augment``: random scale (0.6..1.4) and shift (+-0.2 of the image)
    of the official ``fix_res`` warp, horizontal flip (p 0.5) and colour jitter.  Random draws
    depend on ``(seed, epoch, index)`` only, so a run is reproducible.
    """

    def __init__(self, data: CocoPeople, meta, augment: bool = True, seed: int = 0, max_objs: int = 64,
                 scale_range=(0.6, 1.4), shift: float = 0.2, flip: float = 0.5, jitter: float = 0.4):
        self.data, self.meta, self.augment, self.seed = data, meta, augment, int(seed)
        self.max_objs = max_objs
        self.scale_range, self.shift, self.flip, self.jitter = scale_range, shift, flip, jitter
        self.epoch = 0
        self.down = int(meta.heads.get("hm", {}).get("stride", 4)) if meta.heads else 4

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        import cv2

        from edgepose.pipeline.affine import affine_points, get_affine_transform
        from edgepose.pipeline.preprocess import normalize_to_chw

        rng = _rng(self.seed, index, self.epoch)
        image = self.data.load_image(index)
        boxes = self.data.boxes(index)
        height, width = image.shape[:2]
        inp_h, inp_w = (int(v) for v in self.meta.input_size)
        out_h, out_w = inp_h // self.down, inp_w // self.down
        c = np.array([width / 2.0, height / 2.0], np.float32)
        s = float(max(height, width))
        flipped = False
        if self.augment:
            s *= rng.uniform(*self.scale_range)
            c += rng.uniform(-self.shift, self.shift, size=2).astype(np.float32) * np.array([width, height], np.float32)
            if rng.random() < self.flip:
                flipped = True
                image = image[:, ::-1]
                c[0] = width - c[0] - 1
                if len(boxes):
                    boxes = boxes.copy()
                    boxes[:, [0, 2]] = width - boxes[:, [2, 0]] - 1
        trans_in = get_affine_transform(c, s, 0, (inp_w, inp_h))
        warped = cv2.warpAffine(np.ascontiguousarray(image), trans_in, (inp_w, inp_h), flags=cv2.INTER_LINEAR)
        if self.augment and self.jitter > 0:
            warped = color_jitter(warped, rng, self.jitter)
        inp = normalize_to_chw(warped, self.meta)
        trans_out = get_affine_transform(c, s, 0, (out_w, out_h))
        if len(boxes):
            corners = affine_points(boxes.reshape(-1, 2, 2), trans_out).reshape(-1, 4).astype(np.float32)
        else:
            corners = np.zeros((0, 4), np.float32)
        targets = ctdet_targets(corners, [0] * len(corners), int(self.meta.num_classes), (out_h, out_w),
                                self.max_objs)
        targets["flipped"] = np.uint8(flipped)
        return inp, targets


class PoseDataset:
    """SPPE samples: ``(input [3,H,W] float32, heatmaps [J,h,w], weights [J])`` per person.

    ``meta``: the pose model's metadata (input size (H, W), RGB, AlphaPose mean).  With
    ``augment``: the ground-truth box is jittered (centre +-``box_shift`` of its size, sides
    x(1 +- ``box_scale``)), then turned into a centre/scale exactly like the runtime's
    ``crop_people`` (``box_to_center_scale``, aspect W/H, x1.25); the scale is multiplied by
    ``clip(1 + N(0, sf), 1 - sf, 1 + sf)``, a rotation ``clip(N(0, rf), -2rf, 2rf)`` is used with
    probability ``rot_p`` and the crop is mirrored with probability ``flip`` (left/right joint
    channels swapped via ``COCO_FLIP_PAIRS``).  ``sigma``: heatmap gaussian in heatmap pixels
    (default ``2 * W / 192``: 2 at 256x192, 1 at 128x96).
    """

    def __init__(self, data: CocoPeople, meta, augment: bool = True, seed: int = 0, sigma: float | None = None,
                 box_shift: float = 0.1, box_scale: float = 0.1, sf: float = 0.25, rf: float = 30.0,
                 rot_p: float = 0.6, flip: float = 0.5, jitter: float = 0.3, flip_pairs=COCO_FLIP_PAIRS,
                 min_keypoints: int = 1):
        self.data, self.meta, self.augment, self.seed = data, meta, augment, int(seed)
        self.people = data.people(min_keypoints=min_keypoints)
        if not self.people:
            raise UsageError("no person with labelled keypoints in the data; pose training needs COCO keypoints")
        inp_h, inp_w = (int(v) for v in meta.input_size)
        self.down = int(meta.heads.get("heatmaps", {}).get("stride", 4)) if meta.heads else 4
        self.sigma = float(sigma) if sigma else 2.0 * inp_w / 192.0
        self.box_shift, self.box_scale, self.sf, self.rf, self.rot_p = box_shift, box_scale, sf, rf, rot_p
        self.flip, self.jitter = flip, jitter
        self.flip_pairs = tuple(tuple(p) for p in flip_pairs)
        self.epoch = 0

    def __len__(self):
        return len(self.people)

    def __getitem__(self, index):
        sample = self.sample(index)
        return sample["input"], sample["target"], sample["weight"]

    def sample(self, index) -> dict:
        """``input``/``target``/``weight`` plus the (maybe mirrored) ``image`` and its 2x3 ``trans``."""
        import cv2

        from edgepose.pipeline.affine import affine_points, get_affine_transform
        from edgepose.pipeline.preprocess import box_to_center_scale, normalize_to_chw

        rng = _rng(self.seed, index, self.epoch)
        image_index, ann = self.people[index]
        image = self.data.load_image(image_index)
        height, width = image.shape[:2]
        inp_h, inp_w = (int(v) for v in self.meta.input_size)
        out_h, out_w = inp_h // self.down, inp_w // self.down
        kps = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
        joints, vis = kps[:, :2].copy(), kps[:, 2] > 0
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = np.array([x, y, x + w, y + h], np.float32)
        rot = 0.0
        if self.augment:
            cx, cy = x + w / 2, y + h / 2
            cx += rng.uniform(-self.box_shift, self.box_shift) * w
            cy += rng.uniform(-self.box_shift, self.box_shift) * h
            w *= 1 + rng.uniform(-self.box_scale, self.box_scale)
            h *= 1 + rng.uniform(-self.box_scale, self.box_scale)
            box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
        centers, scales = box_to_center_scale(box[None], aspect_ratio=inp_w / inp_h)
        center, scale = centers[0].copy(), scales[0].copy()
        if self.augment:
            scale *= float(np.clip(1 + rng.normal() * self.sf, 1 - self.sf, 1 + self.sf))
            if rng.random() < self.rot_p:
                rot = float(np.clip(rng.normal() * self.rf, -2 * self.rf, 2 * self.rf))
            if rng.random() < self.flip:
                image = image[:, ::-1]
                center[0] = width - center[0] - 1
                joints[:, 0] = width - joints[:, 0] - 1
                for a, b in self.flip_pairs:
                    joints[[a, b]] = joints[[b, a]]
                    vis[[a, b]] = vis[[b, a]]
        trans = get_affine_transform(center, scale, rot, (inp_w, inp_h))
        crop = cv2.warpAffine(np.ascontiguousarray(image), trans, (inp_w, inp_h), flags=cv2.INTER_LINEAR)
        if self.augment and self.jitter > 0:
            crop = color_jitter(crop, rng, self.jitter)
        inp = normalize_to_chw(crop, self.meta)
        joints_in = affine_points(joints, trans)
        target, weight = joint_heatmaps(joints_in / self.down, vis, (out_h, out_w), self.sigma)
        return {"input": inp, "target": target, "weight": weight, "image": image, "trans": trans,
                "center": center, "scale": scale, "rot": rot}


def collate(samples):
    """Stack a list of dataset samples (tuples of arrays / dicts of arrays) along a new axis 0."""
    first = samples[0]
    if isinstance(first, dict):
        return {k: np.stack([s[k] for s in samples]) for k in first}
    if isinstance(first, tuple):
        return tuple(collate([s[i] for s in samples]) for i in range(len(first)))
    return np.stack(samples)
