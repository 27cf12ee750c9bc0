"""Calibration data: images -> model feeds (with the runtime's own preprocessing) -> ranges.

Sources (:func:`load_calibration_images`):

* an image folder (sorted, ``size`` evenly spaced files),
* a video (``size`` evenly spaced frames),
* a COCO annotation file (``.json``; its images are looked up beside it, in ``images/``),
* ``synthetic[:N[:SEED]]`` -- the synthetic people generator.

Detector feeds come from :func:`edgepose.pipeline.preprocess.ctdet_preprocess`; pose feeds
are the crops the FP32 detector really produces on the calibration images
(:meth:`edgepose.pipeline.pipeline.Pipeline.detect` then
:func:`edgepose.pipeline.preprocess.crop_people`), not ground-truth boxes.

Ranges: :func:`collect_statistics` runs the FP32 graph once with every float activation as
an output and keeps, per tensor, its min/max and a histogram of ``|x|``; :func:`compute_ranges`
derives the symmetric clipping threshold ``amax`` with ``minmax``, ``percentile`` (99.99),
``entropy`` (KL divergence, TensorRT's method) or ``mse``.  One collection serves every
method and every mixed-precision variant the accuracy-budget search builds.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepose.data.coco import find_image, image_roots, read_coco_json
from edgepose.data.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from edgepose.errors import CalibrationError, UsageError
from edgepose.onnx_graph import first_real_input, initializer_names, load_model, producers, real_inputs
from edgepose.ort_session import create_session
from edgepose.progress import bar

log = logging.getLogger("edgepose")

METHODS = ("entropy", "minmax", "percentile", "mse")
_HOW = ("pass --calib DIR (a folder of 50-500 images like the deployment scene), a video file, "
        "a COCO annotation .json, or --calib synthetic")


# ============================================================================ images
@dataclass
class CalibrationImages:
    """Decoded BGR images (uint8 HxWx3) with their names and the source description."""

    images: list
    names: list
    source: str
    skipped: list = field(default_factory=list)

    def __len__(self):
        return len(self.images)

    @property
    def sha256(self) -> str:
        return calibration_hash(self.images, self.names)

    def split(self, held_out: float = 0.25):
        """(calibration part, held-out part) -- the held-out slice measures sensitivity."""
        n = len(self.images)
        k = min(n - 1, max(1, int(round(n * held_out)))) if n > 1 else 0
        idx_hold = set(np.linspace(0, n - 1, k).round().astype(int).tolist()) if k else set()
        a = [i for i in range(n) if i not in idx_hold]
        b = sorted(idx_hold) or a[:1]
        pick = lambda ids: CalibrationImages([self.images[i] for i in ids], [self.names[i] for i in ids],  # noqa: E731
                                             self.source)
        return pick(a), pick(b)


def calibration_hash(images, names=None) -> str:
    """SHA-256 over the ordered images (shape, dtype and pixels) and their names."""
    digest = hashlib.sha256()
    for i, image in enumerate(images):
        arr = np.ascontiguousarray(image)
        name = names[i] if names is not None else str(i)
        digest.update(f"{name}|{arr.shape}|{arr.dtype}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


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


def _read_files(files, source, progress) -> CalibrationImages:
    from edgepose.data.sources import read_image_checked  # also refuses truncated JPEG/PNG

    images, names, skipped = [], [], []
    for path in _progress(files, len(files), "calibration images", progress):
        image, reason = read_image_checked(path)
        if image is None:
            skipped.append(f"{path} ({reason})")
            continue
        images.append(image)
        names.append(Path(path).name)
    return CalibrationImages(images, names, source, skipped)


def _from_folder(folder: Path, size, progress):
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(f"calibration folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                               + _HOW)
    return _read_files(_evenly(files, size), f"folder:{folder}", progress)


def _from_video(path: Path, size, progress):
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CalibrationError(f"cannot open calibration video {path}; check the file or {_HOW}")
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


def _from_coco(ann: Path, size, progress, images_dir=None):
    entries = read_coco_json(ann, error=CalibrationError, how=_HOW)["images"]
    dirs = image_roots(ann, images_dir or None)
    files = [find_image(entry.get("file_name", ""), dirs) for entry in sorted(entries, key=lambda e: e.get("id", 0))]
    if not files:
        raise CalibrationError(f"{ann} lists no images; {_HOW}")
    return _read_files(_evenly(files, size), f"coco:{ann}", progress)


def _from_synthetic(spec: str, size, progress, cache_dir=None):
    parts = spec.split(":")
    num = int(parts[1]) if len(parts) > 1 and parts[1] else int(size or 64)
    seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    from edgepose.data.synthetic import generate_dataset

    root = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="edgepose_calib_"))
    out = root / f"synthetic_n{num}_s{seed}"
    ann = out / "annotations.json"
    if not ann.is_file():
        ann = Path(generate_dataset(out, num_images=num, seed=seed))
    result = _from_coco(Path(ann), size, progress)
    result.source = f"synthetic:{num}:{seed}"
    return result


def load_calibration_images(source, size: int | None = 64, progress: bool = True, images_dir=None,
                            cache_dir=None) -> CalibrationImages:
    """Read a calibration set.  ``source``: folder, video, COCO ``.json`` or
    ``synthetic[:N[:SEED]]``; ``size``: at most this many images, evenly spaced."""
    if source is None:
        raise CalibrationError("INT8 needs calibration data: " + _HOW)
    if size is not None and int(size) < 1:
        raise UsageError(f"--calib-size must be >= 1, got {size}")
    text = str(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        result = _from_synthetic(text, size, progress, cache_dir)
    else:
        path = Path(text)
        if not path.exists():
            raise CalibrationError(f"calibration source {path} does not exist; " + _HOW)
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
                                   "COCO .json; " + _HOW)
    if not result.images:
        extra = f" ({len(result.skipped)} unreadable files, e.g. {result.skipped[0]})" if result.skipped else ""
        raise CalibrationError(f"calibration set {result.source} is empty{extra}; " + _HOW)
    if result.skipped:
        log.warning("edgepose: warning: %d calibration files could not be read and were skipped (e.g. %s)",
                    len(result.skipped), result.skipped[0])
    if size is not None and len(result.images) < 0.5 * int(size):
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


def det_feeds(images: CalibrationImages, det_onnx, meta=None, progress: bool = False) -> list:
    """Detector feeds: :func:`ctdet_preprocess` of every calibration image."""
    from edgepose.metadata import read_metadata
    from edgepose.pipeline.preprocess import ctdet_preprocess

    meta = meta or read_metadata(det_onnx)
    name, batch = _input_of(det_onnx)
    tensors = [ctdet_preprocess(img, meta)[0] for img in _progress(images.images, len(images),
                                                                     "detector feeds", progress)]
    return _batched(tensors, name, batch)


def detector_crops(images: CalibrationImages, det_onnx, pose_onnx, score_threshold: float = 0.3,
                   max_persons: int = 20, progress: bool = False, threads=None):
    """Run the FP32 detector on the images and crop the people it finds, exactly as the
    pipeline will.  Returns ``(list of [1,3,h,w] crops, number of boxes per image)``."""
    from edgepose.backends.onnxruntime import ORTRunner
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.pipeline.preprocess import crop_people

    det = ORTRunner(det_onnx, providers=["CPUExecutionProvider"], threads=threads)
    pose = ORTRunner(pose_onnx, providers=["CPUExecutionProvider"], threads=threads)
    pipe = Pipeline(det, pose, score_threshold=score_threshold, max_persons=max_persons)
    crops, counts = [], []
    for image in _progress(images.images, len(images), "detector crops", progress):
        boxes, _ = pipe.detect(image)
        boxes = boxes[((boxes[:, 2] - boxes[:, 0]) >= 1.0) & ((boxes[:, 3] - boxes[:, 1]) >= 1.0)]
        counts.append(len(boxes))
        if len(boxes):
            batch, _ = crop_people(image, boxes, pose.meta)
            crops.extend(batch[i:i + 1] for i in range(len(batch)))
    return crops, counts


def pose_feeds(images: CalibrationImages, det_onnx, pose_onnx, score_threshold: float = 0.3,
               max_persons: int = 20, progress: bool = False, max_crops: int | None = 512) -> list:
    """Pose feeds: crops of the people the FP32 detector finds on the calibration images."""
    crops, _ = detector_crops(images, det_onnx, pose_onnx, score_threshold, max_persons, progress)
    if not crops:
        raise CalibrationError(
            f"the FP32 detector found no person (score >= {score_threshold}) in the {len(images)} calibration "
            "images, so there are no pose crops to calibrate on; use images that show people (e.g. --calib "
            "synthetic) or lower the detection threshold")
    crops = _evenly(crops, max_crops)
    name, batch = _input_of(pose_onnx)
    return _batched(crops, name, batch)


class FeedReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a list of feed dicts."""

    def __init__(self, feeds: list):
        from onnxruntime.quantization import CalibrationDataReader

        # register as a virtual subclass of ORT's reader without importing ORT at module load
        if not isinstance(self, CalibrationDataReader):
            CalibrationDataReader.register(type(self))
        self.feeds = list(feeds)
        self._it = iter(self.feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.feeds)

    def __len__(self):
        return len(self.feeds)

    def __iter__(self):
        return iter(self.feeds)


# ============================================================================ statistics
@dataclass
class TensorStats:
    """min/max and a histogram of the non-zero |x| over ``[0, edges[-1]]`` (equal-width bins).

    Exact zeros (half of every ReLU output) are counted apart: INT8 represents them exactly
    at any scale, and left in the first bin they dominate the KL divergence and drag the
    entropy threshold far down."""

    lo: float
    hi: float
    hist: np.ndarray
    width: float
    zeros: int = 0

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def edges(self) -> np.ndarray:
        return np.arange(len(self.hist) + 1, dtype=np.float64) * self.width

    def add(self, values: np.ndarray, num_bins: int):
        a = np.abs(values.ravel().astype(np.float32, copy=False))
        a = a[np.isfinite(a)]
        if a.size == 0:
            return
        self.lo = min(self.lo, float(values.min()))
        self.hi = max(self.hi, float(values.max()))
        nonzero = a[a != 0]
        self.zeros += int(a.size - nonzero.size)
        a = nonzero
        if a.size == 0:
            return
        amax = float(a.max())
        if self.width <= 0.0:
            self.width = amax / num_bins
        nb = len(self.hist)
        need = int(np.ceil(amax / self.width))  # the top value lands in the last bin
        if need > nb:  # extend with same-width bins; merge pairs when it grows too long
            self.hist = np.concatenate([self.hist, np.zeros(need - nb, np.int64)])
            while len(self.hist) > 4 * num_bins:
                h = self.hist
                if len(h) % 2:
                    h = np.concatenate([h, [0]])
                self.hist = h.reshape(-1, 2).sum(axis=1)
                self.width *= 2.0
        idx = np.minimum((a / self.width).astype(np.int64), len(self.hist) - 1)
        self.hist += np.bincount(idx, minlength=len(self.hist))


def _float_activations(model) -> list:
    """Names of float tensors computed by the graph (node outputs and graph inputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    names = [i.name for i in real_inputs(model.graph)]
    for node in model.graph.node:
        if node.op_type in ("Constant", "Shape", "QuantizeLinear"):
            continue
        names.extend(o for o in node.output if o)
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    seen, out = set(), []
    for name in names:
        if name not in seen and types.get(name, onnx.TensorProto.FLOAT) in float_types:
            seen.add(name)
            out.append(name)
    return out


def collect_statistics(model, reader, tensors=None, num_bins: int = 2048, progress: bool = True,
                       threads=None) -> dict:
    """Run ``model`` (ModelProto or path) on every feed of ``reader`` (a FeedReader, an
    ORT CalibrationDataReader or a list of feeds) and return ``{tensor: TensorStats}`` for
    every float activation (or just ``tensors``)."""
    import onnx

    model = load_model(model)
    names = list(tensors) if tensors is not None else _float_activations(model)
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in existing:
            augmented.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = create_session(augmented, threads=threads, error=CalibrationError,
                             what="the model to calibrate (with every activation as an output)")
    out_names = [o.name for o in session.get_outputs()]
    wanted = set(names)
    stats: dict = {}
    feeds = list(reader) if not hasattr(reader, "get_next") else _drain(reader)
    if not feeds:
        raise CalibrationError("the calibration reader yielded no feeds; " + _HOW)
    for feed in _progress(feeds, len(feeds), "calibrating", progress):
        values = session.run(out_names, feed)
        for name, value in zip(out_names, values):
            if name not in wanted or not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                continue
            st = stats.get(name)
            if st is None:
                st = stats[name] = TensorStats(float("inf"), float("-inf"), np.zeros(num_bins, np.int64), 0.0)
            st.add(value, num_bins)
    return stats


def _drain(reader) -> list:
    if hasattr(reader, "rewind"):
        reader.rewind()
    feeds = []
    while True:
        item = reader.get_next()
        if item is None:
            break
        feeds.append(item)
    if hasattr(reader, "rewind"):
        reader.rewind()
    return feeds


# ============================================================================ ranges
def _amax_percentile(st: TensorStats, percentile: float) -> float:
    total = st.hist.sum()
    if total == 0 or st.width == 0:
        return st.absmax
    cdf = np.cumsum(st.hist) / total
    idx = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(st.absmax, (idx + 1) * st.width))


def _amax_entropy(st: TensorStats, levels: int = 128, max_candidates: int = 384) -> float:
    """TensorRT's KL calibration on the |x| histogram: the threshold whose 128-level
    quantized distribution is closest (KL divergence) to the clipped reference."""
    hist = st.hist.astype(np.float64)
    nb = len(hist)
    if st.width == 0 or hist.sum() == 0 or nb <= levels:
        return st.absmax
    last = int(np.nonzero(hist)[0][-1]) + 1
    hist, nb = hist[:last], last
    if nb <= levels:
        return st.absmax
    step = max(1, (nb - levels) // max_candidates)
    candidates = list(range(levels, nb + 1, step))
    if candidates[-1] != nb:
        candidates.append(nb)
    best, best_i = np.inf, nb
    eps = 1e-4
    for i in candidates:
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        starts = (np.arange(levels) * i) // levels
        sums = np.add.reduceat(hist[:i], starts)
        nonzero = (hist[:i] > 0).astype(np.float64)
        counts = np.add.reduceat(nonzero, starts)
        per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        owner = np.repeat(np.arange(levels), np.diff(np.append(starts, i)))
        q = per_bin[owner] * nonzero
        # smooth zeros of q (in counts, as MXNet does) where p has mass, to keep KL finite
        q = np.where((q == 0) & (p > 0), eps, q)
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        p, q = p / ps, q / qs
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best:
            best, best_i = kl, i
    return float(min(st.absmax, best_i * st.width))


def _amax_mse(st: TensorStats, qmax: int = 127, num_candidates: int = 256) -> float:
    """Threshold minimising the expected squared error of symmetric INT8 quantization
    (clipping error above it + rounding error below it), from the |x| histogram."""
    hist = st.hist.astype(np.float64)
    if st.width == 0 or hist.sum() == 0:
        return st.absmax
    last = int(np.nonzero(hist)[0][-1]) + 1
    hist = hist[:last]
    centers = (np.arange(last) + 0.5) * st.width
    top = min(st.absmax, last * st.width)
    cands = np.linspace(top / num_candidates, top, num_candidates)
    errs = np.empty(len(cands))
    for k, t in enumerate(cands):
        scale = t / qmax
        q = np.clip(np.round(centers / scale), -qmax, qmax) * scale
        # bin centres alone under-count rounding noise when bins are coarser than a step
        noise = np.minimum(st.width, scale) ** 2 / 12.0
        errs[k] = float(np.sum(hist * ((q - centers) ** 2 + np.where(centers <= t, noise, 0.0))))
    return float(cands[int(np.argmin(errs))])


def head_tensors(model) -> list:
    """The tensors that keep their full observed range whatever the method: the graph
    outputs and the activations feeding the layers that produce them (a head's last hidden
    layer).  A 1x1 head conv maps those activations linearly to box sizes / offsets /
    heatmap peaks, so clipping them clips the very values decoding reads -- KL calibration
    does exactly that to a width/height head (its large values are rare)."""
    graph = model.graph
    inits = initializer_names(graph)
    producer = producers(graph)
    names = [o.name for o in graph.output]
    for out in graph.output:
        node = producer.get(out.name)
        if node is not None and node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            names.extend(i for i in node.input[:1] if i and i not in inits)
    return list(dict.fromkeys(names))


def compute_ranges(stats: dict, method: str = "entropy", percentile: float = 99.99, full_range=()) -> dict:
    """``{tensor: amax}`` (the symmetric range is ``[-amax, amax]``) for ``method``.

    ``full_range``: tensors that always get their observed |max| -- :func:`head_tensors`:
    their extremes are what decoding reads (heatmap peaks, box sizes)."""
    full_range = set(full_range)
    if method not in METHODS:
        raise UsageError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    ranges = {}
    for name, st in stats.items():
        if method == "minmax" or name in full_range:
            amax = st.absmax
        elif method == "percentile":
            amax = _amax_percentile(st, percentile)
        elif method == "entropy":
            amax = _amax_entropy(st)
        else:
            amax = _amax_mse(st)
        ranges[name] = float(amax) if np.isfinite(amax) else 0.0
    return ranges


def summarize_ranges(ranges: dict, stats: dict | None = None) -> dict:
    """Compact summary for report.json: counts, quantiles of amax, most clipped tensors."""
    values = np.array(list(ranges.values()), dtype=np.float64) if ranges else np.zeros(1)
    summary = {
        "tensors": len(ranges),
        "amax_min": float(values.min()), "amax_median": float(np.median(values)),
        "amax_max": float(values.max()),
    }
    if stats:
        clip = []
        for name, amax in ranges.items():
            st = stats.get(name)
            if st is not None and st.absmax > 0:
                clip.append((amax / st.absmax, name))
        clip.sort()
        summary["most_clipped"] = [{"tensor": n, "amax_over_absmax": round(r, 4)} for r, n in clip[:10]]
    return summary
