"""The two public stages, the fast crop path and overlapped runs.

* ``crop_people`` (warp straight into one buffer, fused normalisation, BGR read in RGB order)
  equals the previous per-person implementation (kept below as the NumPy/OpenCV reference)
  within 1e-4, float32 and float16 buffers, both channel orders and the ``im_to_torch`` quirk;
* ``Pipeline(Detector(r), PoseEstimator(r))`` equals ``Pipeline.from_files``;
* overlapped runs (API and ``run_source(overlap=True)``) give results identical to the serial
  run, in order, and errors of the detector thread reach the caller.
"""
import json

import cv2
import numpy as np
import pytest

from edgepose.errors import UsageError
from edgepose.metadata import ALPHAPOSE_MEAN_RGB, COCO_MEAN_BGR, COCO_STD_BGR, ModelMeta
from edgepose.pipeline.affine import get_affine_transform
from edgepose.pipeline.preprocess import box_to_center_scale, crop_people
from helpers.optional import torch_or_skip
from helpers.tiny_pipeline import export_tiny_models, make_frame

CROP_ATOL = 1e-4


def crop_people_reference(image_bgr, boxes, meta, official_max_quirk=False):
    """The crop path before the fast one: an RGB copy of the frame, one warp, transpose, cast
    and normalisation per person (AlphaPose ``test_transform`` step by step)."""
    inp_h, inp_w = meta.input_size
    boxes = np.asarray(boxes, np.float32)[:, :4]
    centers, scales = box_to_center_scale(boxes, aspect_ratio=inp_w / inp_h)
    src = np.ascontiguousarray(image_bgr[:, :, ::-1]) if meta.channel_order.upper() == "RGB" else image_bgr
    mean = np.asarray(meta.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(meta.std, np.float32).reshape(3, 1, 1)
    batch = np.empty((len(boxes), 3, inp_h, inp_w), np.float32)
    for i in range(len(boxes)):
        trans = get_affine_transform(centers[i], scales[i], 0, (inp_w, inp_h))
        chw = cv2.warpAffine(src, trans, (inp_w, inp_h), flags=cv2.INTER_LINEAR).transpose(2, 0, 1).astype(np.float32)
        if not official_max_quirk or chw.max() > 1:
            chw *= np.float32(meta.scale)
        batch[i] = (chw - mean) / std
    half = scales * 0.5
    return batch, np.concatenate([centers - half, centers + half], axis=1).astype(np.float32)


def _meta(order):
    mean, std = (ALPHAPOSE_MEAN_RGB, (0.229, 0.224, 0.225)) if order == "RGB" else (COCO_MEAN_BGR, COCO_STD_BGR)
    return ModelMeta(model="m", task="sppe", input_size=(64, 48), channel_order=order, mean=mean, std=std)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_fast_crop_equals_reference(order):
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    # inside, overlapping the border (black padding), tiny, wider than tall, larger than the frame
    boxes = np.array([[10, 20, 50, 100], [-20, -10, 40, 60], [100, 90, 104, 96], [30, 40, 150, 70],
                      [-50, -50, 220, 200]], np.float32)
    meta = _meta(order)
    ref, ref_boxes = crop_people_reference(frame, boxes, meta)
    fast, fast_boxes = crop_people(frame, boxes, meta)
    assert fast.dtype == np.float32 and fast.shape == ref.shape
    np.testing.assert_allclose(fast, ref, rtol=0, atol=CROP_ATOL)
    np.testing.assert_array_equal(fast_boxes, ref_boxes)
    assert np.abs(ref).max() > 1.5  # really normalised values, not all zeros
    buffer = np.full((8, 3, 64, 48), np.nan, np.float16)  # larger than needed, half precision
    half, _ = crop_people(frame, boxes, meta, out=buffer)
    assert half.dtype == np.float16 and half.shape[0] == 5 and np.shares_memory(half, buffer)
    np.testing.assert_allclose(half.astype(np.float32), ref, rtol=0, atol=5e-3)  # float16 rounding of |x| < 3
    assert np.isnan(buffer[5:]).all()  # rows past N untouched


def test_fast_crop_quirk_and_buffer_errors():
    meta = _meta("RGB")
    frame = np.ones((40, 40, 3), np.uint8)  # max 1: im_to_torch leaves it unscaled
    frame[:, 20:] = 200
    boxes = np.array([[0, 0, 10, 10], [25, 0, 35, 10]], np.float32)
    ref, _ = crop_people_reference(frame, boxes, meta, official_max_quirk=True)
    fast, _ = crop_people(frame, boxes, meta, official_max_quirk=True)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=CROP_ATOL)
    with pytest.raises(UsageError, match="crop buffer"):
        crop_people(frame, boxes, meta, out=np.empty((1, 3, 64, 48), np.float32))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch_or_skip()
    return export_tiny_models(tmp_path_factory.mktemp("stage_models"))


def _assert_identical(a, b):
    assert len(a) == len(b)
    for name in ("boxes", "box_scores", "keypoints", "keypoint_scores", "scores"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_pipeline_from_stages_equals_from_files(models):
    from edgepose.backends.factory import load_runner
    from edgepose.pipeline import Detector, Pipeline, PoseEstimator

    det = Detector(load_runner(models["det"], threads=1), score_threshold=0.3, max_persons=5)
    pose = PoseEstimator(load_runner(models["pose"], threads=1))
    staged = Pipeline(det, pose)
    files = Pipeline.from_files(models["det"], models["pose"], runner_kw={"threads": 1}, max_persons=5)
    frame = make_frame(4)
    found = det(frame)
    assert len(found) > 0 and set(found.timings) == {"preprocess", "detector", "decode"}
    poses = pose(frame, found.boxes)
    assert poses.keypoints.shape == (len(found), 17, 2) and poses.keypoint_scores.shape == (len(found), 17)
    assert set(poses.timings) == {"crop", "pose", "postprocess"}
    a, b = staged(frame), files(frame)
    _assert_identical(a, b)
    np.testing.assert_array_equal(a.keypoints, poses.keypoints)


@pytest.mark.parametrize("pose_model", ["pose", "pose_b3"])
def test_overlapped_equals_serial_in_order(models, pose_model):
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(models["det"], models[pose_model], runner_kw={"threads": 1}, max_persons=7)
    frames = [make_frame(seed, n_rect=1 + seed % 5) for seed in range(9)] + [np.full((96, 128, 3), 20, np.uint8)]
    serial = [pipe(f) for f in frames]
    items = list(enumerate(frames))
    got = list(pipe.run_overlapped(iter(items), frame_of=lambda item: item[1], depth=2))
    assert [item[0] for item, _ in got] == list(range(len(frames)))
    assert sum(len(r) for r in serial) > 10 and len(serial[-1]) == 0  # people found; an empty frame too
    for want, (_, res) in zip(serial, got):
        _assert_identical(res, want)
        assert set(res.timings) >= {"preprocess", "detector", "decode"}


def test_overlapped_errors_reach_the_caller(models):
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(models["det"], models["pose"], runner_kw={"threads": 1})
    frames = [make_frame(0), np.zeros((10, 10), np.uint8), make_frame(1)]
    it = pipe.run_overlapped(frames)
    first, result = next(it)
    assert first is frames[0] and len(result) > 0
    with pytest.raises(UsageError, match="BGR image"):
        next(it)
    # stopping early stops the detector thread
    it = pipe.run_overlapped(make_frame(s) for s in range(50))
    next(it)
    it.close()


def test_run_source_overlap_writes_the_same_json(models, tmp_path):
    from edgepose.data.sources import open_source
    from edgepose.pipeline.pipeline import Pipeline
    from edgepose.pipeline.run_loop import run_source

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), make_frame(i))
    outputs = {}
    for overlap in (False, True):
        pipe = Pipeline.from_files(models["det"], models["pose"], runner_kw={"threads": 1}, overlap=overlap)
        out = tmp_path / f"res_{overlap}.json"
        summary = run_source(pipe, open_source(source=str(folder)), json_path=out, progress=False, overlap=overlap)
        assert summary.frames_processed == 6
        assert "FPS:" in summary.report() and "end-to-end" in summary.report()
        # overlapped, 1000 / mean total ms is a frame's latency, not a rate: not printed as "pipeline only"
        assert ("pipeline only" in summary.report()) != overlap and ("stages overlapped" in summary.report()) == overlap
        outputs[overlap] = json.loads(out.read_text())
    assert len(outputs[False]) > 6 and outputs[True] == outputs[False]
