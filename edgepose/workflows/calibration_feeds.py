"""Calibration sets and the feeds made from them with the runtime's own preprocessing.

Sources (:func:`load_calibration_images`):

* an image folder (sorted, ``size`` evenly spaced files),
* a video (``size`` evenly spaced frames),
* a COCO annotation file (``.json``; its images are looked up beside it, in ``images/``; its
  annotations' person boxes are kept in :attr:`CalibrationImages.boxes`, so the pose model can
  calibrate on ground-truth crops),
* ``synthetic[:N[:SEED]]`` -- the synthetic people generator (:func:`parse_synthetic_spec`).

Detector feeds come from the detector's own preprocessing (CenterNet ``ctdet_preprocess``,
CornerNet ``cornernet_preprocess`` on a canvas of the exported size); pose feeds
are the crops of the people the FP32 detector finds on the calibration images, not
ground-truth boxes: decoded from the detector's own statistics pass
(:class:`edgepose.workflows.pose_calibration.CropsFromOutputs`), or with
:func:`detector_crops` (:meth:`edgepose.pipeline.pipeline.Pipeline.detect` then
:func:`edgepose.pipeline.preprocess.crop_people`) where there is no such pass.  The feeds go to
the pure ONNX -> ONNX library :mod:`edgepose.quant` as lists of ``{input: array}``.
"""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose.data.coco import find_image, image_roots, read_coco_json
from edgepose.data.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from edgepose.errors import CalibrationError, UsageError
from edgepose.onnx_graph import first_real_input, load_model
from edgepose.progress import bar
from edgepose.quant.calibration import HOW, calibration_hash

log = logging.getLogger("edgepose")


@dataclass
class CalibrationImages:
    """Decoded BGR images (uint8 HxWx3) with their names and the source description."""

    images: list
    names: list
    source: str
    skipped: list = field(default_factory=list)
    boxes: list | None = None  # per image, [N,4] x1,y1,x2,y2 ground-truth person boxes (COCO .json only)

    def __len__(self):
        return len(self.images)

    @property
    def sha256(self) -> str:
        return calibration_hash(self.images, self.names)

    def split(self, held_out: float = 0.25, count: int | None = None):
        """(calibration part, held-out part) -- the held-out slice (``held_out`` of the images,
        or ``count`` of them) measures agreement and sensitivity."""
        n = len(self.images)
        want = int(round(n * held_out)) if count is None else int(count)
        k = min(n - 1, max(1, want)) if n > 1 else 0
        idx_hold = set(np.linspace(0, n - 1, k).round().astype(int).tolist()) if k else set()
        a = [i for i in range(n) if i not in idx_hold]
        b = sorted(idx_hold) or a[:1]
        pick = lambda ids: CalibrationImages([self.images[i] for i in ids], [self.names[i] for i in ids],  # noqa: E731
                                             self.source, boxes=None if self.boxes is None else
                                             [self.boxes[i] for i in ids])
        return pick(a), pick(b)


def _evenly(items: list, size: int | None) -> list:
    if size is None or size >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, int(size)).round().astype(int)
    return [items[i] for i in idx]


def _cv2():
    from edgepose._deps import require

    return require("cv2", extra="pip install opencv-python-headless")


def _progress(iterable, total, desc, enabled):
    return bar(iterable, total=total, desc=desc, enabled=enabled, unit="img")


def _read_files(files, source, progress, boxes=None) -> CalibrationImages:
    from edgepose.data.sources import read_image_checked  # also refuses truncated JPEG/PNG

    images, names, skipped, kept_boxes = [], [], [], []
    for i, path in enumerate(_progress(files, len(files), "calibration images", progress)):
        image, reason = read_image_checked(path)
        if image is None:
            skipped.append(f"{path} ({reason})")
            continue
        images.append(image)
        names.append(Path(path).name)
        if boxes is not None:
            kept_boxes.append(boxes[i])
    return CalibrationImages(images, names, source, skipped, boxes=kept_boxes if boxes is not None else None)


def _from_folder(folder: Path, size, progress):
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(f"calibration folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                               + HOW)
    return _read_files(_evenly(files, size), f"folder:{folder}", progress)


def _from_video(path: Path, size, progress):
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CalibrationError(f"cannot open calibration video {path}; check the file or {HOW}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        want = int(size or 64)
        images, names = [], []
        if total > 0:
            idx = np.unique(np.linspace(0, total - 1, min(want, total)).round().astype(int))
            for i in _progress(idx, len(idx), "calibration frames", progress):
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
                ok, frame = cap.read()
                if ok and frame is not None:
                    images.append(frame)
                    names.append(f"{path.name}#{int(i)}")
        else:  # unknown length: read everything, then pick evenly
            from edgepose.data.sources import open_source

            stream = open_source(source=str(path))
            try:
                frames = [frame for _, frame, _ in stream]
            finally:
                stream.close()
            picked = _evenly(list(enumerate(frames)), want)
            images = [f for _, f in picked]
            names = [f"{path.name}#{i}" for i, _ in picked]
    finally:
        cap.release()
    return CalibrationImages(images, names, f"video:{path}")


def _person_boxes(doc: dict) -> dict:
    """``{image id: [N,4] x1,y1,x2,y2}`` of the non-crowd person annotations of a COCO document
    (boxes under 1 px are left out: they cannot be cropped)."""
    person_ids = {c.get("id") for c in doc.get("categories", []) if c.get("name") == "person"} or {1}
    boxes = {}
    for ann in doc.get("annotations", []):
        x, y, w, h = (list(ann.get("bbox") or []) + [0, 0, 0, 0])[:4]
        if ann.get("iscrowd") or ann.get("category_id", 1) not in person_ids or w < 1 or h < 1:
            continue
        boxes.setdefault(ann.get("image_id"), []).append([x, y, x + w, y + h])
    return {k: np.asarray(v, np.float32) for k, v in boxes.items()}


def _from_coco(ann: Path, size, progress, images_dir=None):
    doc = read_coco_json(ann, error=CalibrationError, how=HOW)
    dirs = image_roots(ann, images_dir or None)
    entries = _evenly(sorted(doc["images"], key=lambda e: e.get("id", 0)), size)
    if not entries:
        raise CalibrationError(f"{ann} lists no images; {HOW}")
    files = [find_image(entry.get("file_name", ""), dirs) for entry in entries]
    gt = _person_boxes(doc)
    boxes = [gt.get(entry.get("id"), np.zeros((0, 4), np.float32)) for entry in entries]
    return _read_files(files, f"coco:{ann}", progress, boxes=boxes)


def parse_synthetic_spec(spec: str, size=None) -> tuple:
    """``synthetic[:N[:SEED]]`` -> ``(N, SEED)`` (``N`` defaults to ``size`` or 64, ``SEED`` to 0);
    UsageError naming the bad part otherwise."""
    parts = str(spec).split(":")
    if parts[0] != "synthetic" or len(parts) > 3:
        raise UsageError(f"--calib {spec!r}: a synthetic set is written synthetic[:N[:SEED]], e.g. synthetic:64:0")
    values = []
    for label, text, default in (("N", parts[1] if len(parts) > 1 else "", int(size or 64)),
                                 ("SEED", parts[2] if len(parts) > 2 else "", 0)):
        if not text:
            values.append(default)
            continue
        if not text.isdigit() or (label == "N" and int(text) < 1):
            raise UsageError(f"--calib {spec!r}: {label} must be a whole number{' >= 1' if label == 'N' else ''}, "
                             f"got {text!r}; write synthetic[:N[:SEED]], e.g. synthetic:64:0")
        values.append(int(text))
    return tuple(values)


def _from_synthetic(spec: str, size, progress, cache_dir=None):
    num, seed = parse_synthetic_spec(spec, size)
    from edgepose.data.synthetic import generate_dataset

    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="edgepose_calib_"))
    out = root / f"synthetic_n{num}_s{seed}"
    ann = out / "annotations.json"
    if not ann.is_file():
        ann = Path(generate_dataset(out, num_images=num, seed=seed))
    result = _from_coco(Path(ann), size, progress)
    result.source = f"synthetic:{num}:{seed}"
    result.boxes = None  # the synthetic set calibrates the pose model on the detector's crops, as deployed
    return result


def load_calibration_images(source, size: int | None = 64, progress: bool = True, images_dir=None,
                            cache_dir=None, warn_few: bool = True) -> CalibrationImages:
    """Read a calibration set.  ``source``: folder, video, COCO ``.json`` or
    ``synthetic[:N[:SEED]]``; ``size``: at most this many images, evenly spaced (``warn_few``:
    warn when under half of them are there; off when the caller warns itself)."""
    if source is None:
        raise CalibrationError("INT8 needs calibration data: " + HOW)
    if size is not None and int(size) < 1:
        raise UsageError(f"--calib-size must be >= 1, got {size}")
    text = str(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        result = _from_synthetic(text, size, progress, cache_dir)
    else:
        path = Path(text)
        if not path.exists():
            raise CalibrationError(f"calibration source {path} does not exist; " + HOW)
        if path.is_dir():
            result = _from_folder(path, size, progress)
        elif path.suffix.lower() == ".json":
            result = _from_coco(path, size, progress, images_dir)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            result = _from_video(path, size, progress)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            result = _read_files([path], f"image:{path}", progress)
        else:
            raise CalibrationError(f"calibration source {path} is neither a folder, a video, an image nor a "
                                   "COCO .json; " + HOW)
    if not result.images:
        extra = f" ({len(result.skipped)} unreadable files, e.g. {result.skipped[0]})" if result.skipped else ""
        raise CalibrationError(f"calibration set {result.source} is empty{extra}; " + HOW)
    if result.skipped:
        log.warning("edgepose: warning: %d calibration files could not be read and were skipped (e.g. %s)",
                    len(result.skipped), result.skipped[0])
    if warn_few and size is not None and len(result.images) < 0.5 * int(size):
        log.warning("edgepose: warning: calibrating on only %d usable images of the %d asked for (--calib-size) "
                    "from %s; INT8 ranges from so few images may be off -- add images or lower --calib-size",
                    len(result.images), int(size), result.source)
    return result


# ============================================================================ feeds
def _batched(tensors: list, input_name: str, batch) -> list:
    """List of [1,...] arrays -> list of feeds with the model's static batch (padded by
    repeating the last sample) or batch 1 for a dynamic batch."""
    if not tensors:
        return []
    b = batch if isinstance(batch, int) and batch > 0 else 1
    feeds = []
    for start in range(0, len(tensors), b):
        part = list(tensors[start:start + b])
        part += [part[-1]] * (b - len(part))
        feeds.append({input_name: np.ascontiguousarray(np.concatenate(part, axis=0), dtype=np.float32)})
    return feeds


def _input_of(onnx_path):
    inp = first_real_input(load_model(onnx_path, load_external_data=False, error=CalibrationError).graph)
    dims = inp.type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    return inp.name, batch


def _det_input(image, meta):
    """The detector's own preprocessing of one image, ``(tensor [1,3,H,W], geometry info)``:
    CenterNet ``ctdet_preprocess``, or CornerNet's zero canvas of ``meta.input_size`` (one
    size for every feed; the image shrunk to fit it when larger)."""
    from edgepose.pipeline.preprocess import cornernet_preprocess, ctdet_preprocess

    if meta.task != "cornernet":
        return ctdet_preprocess(image, meta)
    (h, w), (ih, iw) = meta.input_size, image.shape[:2]
    return cornernet_preprocess(image, meta, test_scale=min(1.0, h / ih, w / iw), canvas=(h, w))


def det_inputs(images: CalibrationImages, det_onnx, meta=None, progress: bool = False) -> tuple:
    """``(detector feeds, per-image geometry info)``: the detector's own preprocessing
    (:func:`_det_input`) of every image; the infos map the detector's outputs on those feeds
    back to image pixels (:func:`edgepose.workflows.pose_calibration.crops_from_outputs`)."""
    from edgepose.metadata import read_metadata

    meta = meta or read_metadata(det_onnx)
    name, batch = _input_of(det_onnx)
    pairs = [_det_input(img, meta) for img in _progress(images.images, len(images), "detector feeds", progress)]
    return _batched([t for t, _ in pairs], name, batch), [info for _, info in pairs]


def det_feeds(images: CalibrationImages, det_onnx, meta=None, progress: bool = False) -> list:
    """Detector feeds: the detector's own preprocessing (:func:`_det_input`) of every image."""
    return det_inputs(images, det_onnx, meta, progress)[0]


def detector_crops(images: CalibrationImages, det_onnx, pose_onnx, score_threshold: float = 0.3,
                   max_persons: int = 20, progress: bool = False, threads=None):
    """Run the FP32 detector on the images and crop the people it finds, exactly as the
    pipeline will.  Returns ``(list of [1,3,h,w] crops, number of boxes per image)``."""
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.workflows.pose_calibration import crops_of_boxes

    pipe = Pipeline.from_files(str(det_onnx), str(pose_onnx), backend="onnxruntime",
                               runner_kw={"providers": ["CPUExecutionProvider"], "threads": threads},
                               score_threshold=score_threshold, max_persons=max_persons)
    crops, counts = [], []
    try:
        for image in _progress(images.images, len(images), "detector crops", progress):
            found = crops_of_boxes(image, pipe.detect(image)[0], pipe.pose_meta)
            counts.append(len(found))
            crops.extend(found)
    finally:
        pipe.close()
    return crops, counts


def pose_feeds(images: CalibrationImages, det_onnx, pose_onnx, score_threshold: float = 0.3,
               max_persons: int = 20, progress: bool = False, max_crops: int | None = 512) -> list:
    """Pose feeds: crops of the people the FP32 detector finds on the calibration images."""
    crops, _ = detector_crops(images, det_onnx, pose_onnx, score_threshold, max_persons, progress)
    if not crops:  # say what the detector did find (scores, box sizes), not only "nobody"
        from edgepose.workflows.pose_calibration import describe_no_people

        raise CalibrationError(describe_no_people(images, det_onnx, score_threshold))
    crops = _evenly(crops, max_crops)
    name, batch = _input_of(pose_onnx)
    return _batched(crops, name, batch)
