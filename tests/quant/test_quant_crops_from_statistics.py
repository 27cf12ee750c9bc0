"""Calibration cost (issue 15 item 1): the pose crops come from the detector's own statistics
pass instead of a second FP32 detector run, and the agreement judge reuses its FP32 runs.

* Crops: on the built-in models (trained on synthetic people), 16 synthetic images, the
  people decoded from the statistics pass's ``hm``/``wh``/``reg`` equal the pipeline's
  (``Pipeline.detect``, the old path): same count per image, boxes within 1e-3 px.  The two
  runs differ only by float rounding (the calibration feed is ``ctdet_preprocess``, the
  pipeline's is the fused ``normalize_into``, ~1e-6; the statistics graph exposes every
  activation, so ORT fuses differently, ~1e-6), so a crop pixel may land one uint8 level
  apart in ``cv2.warpAffine``'s fixed-point grid: at most one pixel level, on at most 0.1 % of
  the values.  The pose ranges from the two crop sets (71 crops): minmax and percentile within
  rel 1e-3, mse within rel 1e-2 (measured 5e-6 and 5e-3); entropy's KL minimum is flat, so
  the same float noise moves a few thresholds by one candidate: median difference 0, at most
  10 % of the tensors beyond rel 1e-2 and none beyond 20 % (measured: 4 of 54, at most 14 %;
  on 64 images / 235 crops at most 0.25 %).
* Judge: a candidate's records equal those of a fresh FP32/candidate pipeline
  (:func:`pipeline_records`, the old computation) exactly, for both roles.
"""
import numpy as np
import pytest

from edgepose.metadata import read_metadata
from edgepose.models.defaults import default_model_paths
from edgepose.workflows import calibration_feeds as F

from helpers.quant_models import make_tiny_models

THRESHOLD = 0.1


@pytest.fixture(scope="module")
def builtin():
    return tuple(str(p) for p in default_model_paths())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return F.load_calibration_images("synthetic:16:0", size=16, progress=False,
                                     cache_dir=tmp_path_factory.mktemp("synth_crops"))


def _detector(det):
    from edgepose.backends.factory import load_runner
    from edgepose.pipeline.detector import Detector

    return Detector(load_runner(det, backend="onnxruntime", providers=["CPUExecutionProvider"]),
                    score_threshold=THRESHOLD)


def _pipeline_boxes(images, det, pose):
    from edgepose.pipeline.pipeline import Pipeline

    pipe = Pipeline.from_files(det, pose, backend="onnxruntime", score_threshold=THRESHOLD)
    try:
        return [pipe.detect(image)[0] for image in images.images]
    finally:
        pipe.close()


def test_crops_from_the_statistics_pass_equal_the_detector_run(builtin, images):
    from edgepose.quant import calibration as C
    from edgepose.quant.build import calibrate
    from edgepose.workflows.pose_calibration import CropsFromOutputs, crop_feeds

    det, pose = builtin
    old_crops, old_counts = F.detector_crops(images, det, pose, score_threshold=THRESHOLD)
    feeds, infos = F.det_inputs(images, det, read_metadata(det))
    detector = _detector(det)
    own = CropsFromOutputs(images.images, infos, detector, read_metadata(pose))
    calibrate(det, feeds, on_outputs=own)
    detector.runner.close()
    assert sum(old_counts) >= 30, old_counts  # else the test shows little
    assert own.counts == old_counts
    for got, want in zip(own.boxes, _pipeline_boxes(images, det, pose)):
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    a, b = np.concatenate(old_crops), np.concatenate(own.crops)
    level = 1.0 / 255 / float(np.min(read_metadata(pose).std)) + 1e-6  # one uint8 pixel level, normalised
    diff = np.abs(a - b)
    assert diff.max() <= level and np.count_nonzero(diff) <= 1e-3 * diff.size, (diff.max(), np.count_nonzero(diff))

    old_stats = calibrate(pose, crop_feeds(old_crops, pose))
    new_stats = calibrate(pose, crop_feeds(own.crops, pose))
    heads = C.head_tensors(old_stats.prepared)
    for method in C.METHODS:
        ra = C.compute_ranges(old_stats.stats, method, full_range=heads)
        rb = C.compute_ranges(new_stats.stats, method, full_range=heads)
        assert ra.keys() == rb.keys()
        rel = np.array([abs(rb[n] - ra[n]) / max(abs(ra[n]), 1e-12) for n in ra])
        if method == "entropy":  # KL's flat minimum: most thresholds equal, a few hop one candidate
            assert np.median(rel) <= 1e-6 and np.mean(rel > 1e-2) <= 0.1 and rel.max() <= 0.2, sorted(rel)[-5:]
        else:
            assert rel.max() <= (1e-3 if method in ("minmax", "percentile") else 1e-2), (method, rel.max())


def test_judge_records_equal_a_fresh_pipeline(builtin, images, tmp_path):
    """Candidates: the tiny random models (another detector, another pose model) -- the
    records must be the very ones a fresh FP32 + candidate pipeline gives."""
    from edgepose.workflows.agreement import AgreementJudge, pipeline_records

    det, pose = builtin
    tiny_det, tiny_pose = (str(p) for p in make_tiny_models(tmp_path))
    few = images.images[:4]
    with AgreementJudge({"det": det, "pose": pose}, few, THRESHOLD) as judge:
        assert judge.records == pipeline_records(det, pose, few, THRESHOLD) and judge.records
        for role, candidate, pair in (("pose", tiny_pose, (det, tiny_pose)), ("det", tiny_det, (tiny_det, pose))):
            got = judge.candidate_records(role, candidate)
            assert got and got == pipeline_records(*pair, few, THRESHOLD), role
