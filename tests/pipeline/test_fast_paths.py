"""The pipeline's speed paths (issue 15 item 3) against the code they replace.

* ``heatmap_to_coords`` by flat indices equals the official per-joint loop;
* the detector's cached fix_res geometry equals ``ctdet_preprocess`` + a fresh decode per frame.
"""

import numpy as np

from edgepose.pipeline import preprocess


def _coords_loop(hms, boxes):
    """heatmap_to_coord_simple written out per person and joint (the official loop)."""
    n, j, h, w = hms.shape
    coords = np.zeros((n, j, 2)), np.zeros((n, j, 1), np.float32)
    for p in range(n):
        for k in range(j):
            hm = hms[p, k]
            i = int(np.argmax(hm))
            val = hm.reshape(-1)[i]
            x, y = (float(i % w), float(i // w)) if val > 0 else (0.0, 0.0)
            px, py = int(x), int(y)
            if 1 < px < w - 1 and 1 < py < h - 1:
                x += 0.25 * np.sign(hm[py, px + 1] - hm[py, px - 1])
                y += 0.25 * np.sign(hm[py + 1, px] - hm[py - 1, px])
            bw = boxes[p, 2] - boxes[p, 0]
            cx, cy = boxes[p, 0] + bw / 2, boxes[p, 1] + (boxes[p, 3] - boxes[p, 1]) / 2
            coords[0][p, k] = ((x - w / 2) * bw / w + cx, (y - h / 2) * bw / w + cy)
            coords[1][p, k, 0] = val
    return coords


def test_heatmap_to_coords_equals_the_per_joint_loop():
    from edgepose.pipeline.decode import heatmap_to_coords

    rng = np.random.default_rng(1)
    hms = rng.standard_normal((5, 17, 16, 12)).astype(np.float32) * 0.1
    hms[0, 0] = -1.0  # no positive value: (0, 0)
    hms[0, 1, 0, 5] = 3.0  # peak on the border: no quarter step
    hms[0, 2, 15, 11] = 3.0
    hms[0, 3, 7, 1] = 3.0
    hms[1, 4, 5, 6] = hms[1, 4, 5, 7] = 3.0  # tie: the first one, step towards the equal neighbour
    hms[2, 5, 8, 8] = 3.0
    hms[2, 5, 8, 7] = hms[2, 5, 8, 9] = 1.0  # equal neighbours: sign 0
    boxes = np.array([[10, 20, 58, 84], [0, 0, 30, 40], [5.5, 7.25, 40, 90], [100, 50, 130, 90], [1, 2, 3, 5]],
                     np.float32)
    got_xy, got_s = heatmap_to_coords(hms, boxes)
    ref_xy, ref_s = _coords_loop(hms, boxes.astype(np.float64))
    assert got_xy.shape == (5, 17, 2) and got_s.shape == (5, 17, 1)
    assert np.abs(got_xy - ref_xy).max() <= 1e-4
    assert np.array_equal(got_s, ref_s)


def test_detector_fast_path_equals_reference_preprocessing(tmp_path_factory):
    """fix_res with cached geometry, preallocated buffers and table normalisation, over frames
    of two sizes in turn, against ``ctdet_preprocess`` + a fresh decode of every frame."""
    from edgepose.backends.factory import load_runner
    from edgepose.pipeline import Detector
    from edgepose.pipeline.detector import as_float32, feed_of
    from helpers.optional import torch_or_skip
    from helpers.tiny_pipeline import export_tiny_models, make_frame

    torch_or_skip()
    models = export_tiny_models(tmp_path_factory.mktemp("fast_path_models"))
    det = Detector(load_runner(models["det"], threads=1), score_threshold=0.05, max_persons=8)
    frames = [make_frame(seed, *size) for seed, size in enumerate([(96, 128), (120, 90)] * 3)]
    for frame in frames:
        found = det(frame)
        tensor, info = preprocess.ctdet_preprocess(frame, det.meta, mode="fix_res")
        assert np.abs(det._tensor - tensor).max() <= 1e-5  # the fused normalisation: float rounding only
        out = as_float32(det.runner.infer(feed_of(det.runner, tensor)))
        assert "trans_output_inv" not in info
        boxes, scores = det.select_people(det.decode(out, info), frame.shape)
        assert len(found) == len(boxes) > 0
        np.testing.assert_allclose(found.boxes, boxes, atol=1e-4)
        np.testing.assert_allclose(found.scores, scores, atol=1e-5)
