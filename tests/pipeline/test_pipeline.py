"""Two-stage pipeline on generated frames with tiny exported models.

The batched pipeline (all crops of a frame in one pose call) must give the same numbers
as ``run_reference`` (each person cropped, run and decoded on its own); static-batch pose
models (1 and 3, padded) and the in-graph decoders must agree with the dynamic raw-head
path; the ONNX path must work with torch unimportable.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from edgepose.errors import UsageError
from helpers.optional import torch_or_skip
from helpers.paths import REPO
from helpers.tiny_pipeline import DET_META, POSE_META, export_tiny_models, make_frame

ATOL = 1e-5  # batched vs one-at-a-time (same backend, same arithmetic up to GEMM blocking)



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch_or_skip()
    return export_tiny_models(tmp_path_factory.mktemp("tiny_models"))


def _pipe(det, pose, **kw):
    from edgepose.pipeline.pipeline import Pipeline

    return Pipeline.from_files(det, pose, runner_kw={"threads": 1}, **kw)


def _assert_same(a, b, atol=ATOL):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=atol)
    np.testing.assert_allclose(a.box_scores, b.box_scores, rtol=0, atol=atol)
    np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=atol)
    np.testing.assert_allclose(a.keypoint_scores, b.keypoint_scores, rtol=0, atol=atol)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=atol)


def test_batched_equals_one_person_at_a_time(models):
    pipe = _pipe(models["det"], models["pose"])
    total = 0
    for seed in range(4):
        frame = make_frame(seed)
        res = pipe(frame)
        ref = pipe.run_reference(frame)
        _assert_same(res, ref)
        total += len(res)
        n = len(res)
        assert res.boxes.shape == (n, 4) and res.keypoints.shape == (n, 17, 2)
        assert res.keypoint_scores.shape == (n, 17) and res.scores.shape == (n,)
        assert np.all(res.box_scores >= 0.3) and np.all(np.diff(res.box_scores) <= 0)
        # boxes clipped into the frame; keypoints land near their box (crop is 1.25x the box)
        assert np.all(res.boxes[:, [0, 2]] <= 128) and np.all(res.boxes >= 0)
        assert set(res.timings) == {"preprocess", "detector", "decode", "crop", "pose", "postprocess"}
    assert total >= 8  # the bright rectangles are found (otherwise the comparison is vacuous)


def test_people_are_on_bright_rectangles(models):
    pipe = _pipe(models["det"], models["pose"])
    frame = make_frame(1)
    res = pipe(frame)
    assert len(res) > 0
    gray = frame.mean(axis=2)
    for x1, y1, x2, y2 in res.boxes:
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        patch = gray[max(cy - 6, 0):cy + 6, max(cx - 6, 0):cx + 6]
        assert patch.max() > 150  # a person box is centred near a bright rectangle


def test_pose_scores_formula(models):
    res = _pipe(models["det"], models["pose"])(make_frame(2))
    assert len(res) > 0
    expect = res.keypoint_scores.mean(1) + res.box_scores + 1.25 * res.keypoint_scores.max(1)
    np.testing.assert_allclose(res.scores, expect, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("variant", ["pose_b1", "pose_b3"])
def test_static_batch_pose_models_agree(models, variant):
    dyn = _pipe(models["det"], models["pose"], max_persons=7)
    static = _pipe(models["det"], models[variant], max_persons=7)
    assert static.pose.max_batch == int(variant[-1])
    for seed in range(3):
        frame = make_frame(seed, n_rect=7)
        a, b = dyn(frame), static(frame)
        assert len(a) > 3  # several chunks, the last one padded
        _assert_same(a, b)


def test_flip_batched_equals_reference(models):
    pipe = _pipe(models["det"], models["pose"], flip=True)
    plain = _pipe(models["det"], models["pose"])
    frame = make_frame(3)
    res, ref, no_flip = pipe(frame), pipe.run_reference(frame), plain(frame)
    _assert_same(res, ref)
    assert len(res) > 0
    assert not np.allclose(res.keypoint_scores, no_flip.keypoint_scores)  # flip really averaged


def test_in_graph_decoders_match_host_decode(models):
    if "det_topk" not in models:
        pytest.fail("edgepose.export.graph_decode is missing; the in-graph decoders cannot be checked")
    host = _pipe(models["det"], models["pose"])
    graph = _pipe(models["det_topk"], models["pose_argmax"])
    assert graph.det_meta.decode == "ctdet_topk" and graph.pose_meta.decode == "sppe_argmax"
    for seed in range(3):
        frame = make_frame(seed)
        a, b = host(frame), graph(frame)
        _assert_same(a, b, atol=1e-4)  # torch vs NumPy sigmoid/decode: float32 rounding only
    with pytest.raises(UsageError, match="flip"):
        _pipe(models["det_topk"], models["pose_argmax"], flip=True)


def test_cornernet_detector_batched_equals_reference(models):
    pipe = _pipe(models["corner"], models["pose"], max_persons=6)
    total = 0
    for seed in range(3):
        frame = make_frame(seed)
        res, ref = pipe(frame), pipe.run_reference(frame)
        _assert_same(res, ref)
        total += len(res)
        assert np.all(res.boxes[:, 2] > res.boxes[:, 0]) and np.all(res.boxes[:, [0, 2]] <= 128)
    assert total > 3


def test_filters_threshold_max_persons_and_empty(models):
    pipe = _pipe(models["det"], models["pose"], max_persons=2)
    frame = make_frame(0)
    assert len(pipe(frame)) == 2
    none = _pipe(models["det"], models["pose"], score_threshold=1.0)(frame)
    assert len(none) == 0 and none.keypoints.shape == (0, 17, 2) and none.scores.shape == (0,)
    # class filter: class 1 fires on the dark background; no person may come from it
    dark = np.full((96, 128, 3), 20, np.uint8)
    assert len(_pipe(models["det"], models["pose"])(dark)) == 0
    with pytest.raises(UsageError, match="BGR image"):
        pipe(np.zeros((10, 10), np.uint8))
    with pytest.raises(UsageError, match="uint8"):
        pipe(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(UsageError, match="keep_res"):  # the tiny detector has a fixed 64x64 input
        _pipe(models["det"], models["pose"], det_mode="keep_res")


def test_torch_runner_pipeline_agrees_with_onnx(models):
    from edgepose.backends.torch_runner import TorchRunner
    from edgepose.pipeline.pipeline import Pipeline

    det, pose = models["nets"]
    ref = Pipeline(TorchRunner(det, meta=DET_META), TorchRunner(pose, meta=POSE_META))
    onnx_pipe = _pipe(models["det"], models["pose"])
    frame = make_frame(5)
    _assert_same(onnx_pipe(frame), ref(frame), atol=1e-4)


def test_two_line_api_without_torch(models, tmp_path):
    import cv2

    frame = make_frame(6)
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    script = f"""
import sys, json
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import cv2, numpy as np, edgepose
pipe = edgepose.Pipeline.from_files({str(models['det'])!r}, {str(models['pose'])!r}, runner_kw={{'threads': 1}})
res = pipe(cv2.imread({str(tmp_path / 'frame.png')!r}))
json.dump({{'boxes': res.boxes.tolist(), 'kp': res.keypoints.tolist(), 'ks': res.keypoint_scores.tolist(),
           'torch_loaded': sys.modules.get('torch') is not None}}, open({str(tmp_path / 'out.json')!r}, 'w'))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["torch_loaded"] is False
    res = _pipe(models["det"], models["pose"])(frame)
    assert len(res) > 0
    np.testing.assert_allclose(np.array(out["boxes"]), res.boxes, atol=ATOL)
    np.testing.assert_allclose(np.array(out["kp"]), res.keypoints, atol=ATOL)
    np.testing.assert_allclose(np.array(out["ks"]), res.keypoint_scores, atol=ATOL)


def test_draw_poses_marks_the_frame(models):
    from edgepose.pipeline.visualize import draw_poses

    frame = make_frame(0)
    res = _pipe(models["det"], models["pose"])(frame)
    drawn = draw_poses(frame, res, fps=12.3, kp_threshold=0.0)
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    assert not np.array_equal(drawn, frame)
    np.testing.assert_array_equal(frame, make_frame(0))  # input untouched
    # the box outline colour is on the first box's top edge
    x1, y1, x2, _ = (int(round(v)) for v in res.boxes[0])
    edge = drawn[min(y1, 95), max(x1, 0):min(x2, 127) + 1]
    assert (np.abs(edge.astype(int) - (0, 220, 255)).sum(axis=1) < 60).any()


def test_timing_stats():
    from edgepose.pipeline.timing import LatencyStats, StageTimer, format_latency_table

    st = LatencyStats.from_samples(range(1, 101))
    assert st.count == 100 and st.mean == pytest.approx(50.5)
    assert st.p50 == pytest.approx(np.percentile(np.arange(1, 101), 50))
    assert st.p99 == pytest.approx(np.percentile(np.arange(1, 101), 99))
    timer = StageTimer()
    for ms in ([1.0, 2.0], [3.0, 4.0]):
        timer.merge_frame({"detector": ms[0], "pose": ms[1]})
    stats = timer.stats()
    assert stats["detector"].mean == pytest.approx(2.0) and stats["total"].mean == pytest.approx(5.0)
    table = format_latency_table(stats, fps=200.0)
    assert "detector" in table and "p99" in table and "FPS: 200.00" in table
