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

from pathlib import Path

import numpy as np

from edgepose.data.coco import find_image, image_roots, read_coco_json
from edgepose.errors import UsageError
from edgepose.metadata import COCO_FLIP_PAIRS
from edgepose.train.targets import ctdet_targets, draw_gaussian, gaussian_radius, joint_heatmaps  # noqa: F401

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
