"""HeatmapTopK: torch op vs NumPy reference vs ONNX Runtime-run decomposition, the plugin node,
and the golden ``centernet_ctdet_decode`` case (reference README, "Decode (ctdet_decode)")."""
import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
ort = pytest.importorskip("onnxruntime")

from edgepose.errors import UsageError  # noqa: E402
from edgepose.ops import PLUGIN_NAMESPACE  # noqa: E402
from edgepose.ops.heatmap_topk import (  # noqa: E402
    TRT_TOPK_LIMIT,
    heatmap_topk,
    heatmap_topk_numpy,
    heatmap_topk_onnx_model,
)

ATOL = 1e-5  # fp32: boxes/scores are a few float ops away from the reference


def _inputs(rng, n, c, h, w, plateau=False):
    hm = rng.normal(0, 2, size=(n, c, h, w)).astype(np.float32)
    if plateau and h >= 2 and w >= 3:
        hm[0, 0, 0, 1:3] = 9.0  # equal neighbouring maxima: both must survive the peak test
    wh = rng.uniform(0.5, 20, size=(n, 2, h, w)).astype(np.float32)
    reg = rng.uniform(0, 1, size=(n, 2, h, w)).astype(np.float32)
    return hm, wh, reg


def assert_same_detections(got, ref, atol=ATOL):
    """Compare (boxes, scores, classes) robustly to the order of tied scores.

    Scores must agree position by position (both are sorted descending).  Rows whose score
    is strictly above the K-th score form a set that must be identical (the K-th score can be
    a tie at the cut, e.g. 0 for non-peaks, where any of the tied elements is correct)."""
    gb, gs, gc = (np.asarray(v) for v in got)
    rb, rs, rc = (np.asarray(v) for v in ref)
    assert gb.shape == rb.shape and gs.shape == rs.shape and gc.shape == rc.shape
    assert gc.dtype == np.int32
    np.testing.assert_allclose(gs, rs, atol=atol, rtol=0)
    for n in range(rs.shape[0]):
        cut = rs[n, -1]
        gsel, rsel = gs[n] > cut + atol, rs[n] > cut + atol
        assert gsel.sum() == rsel.sum()

        def rows(b, s, c, sel):
            r = np.concatenate([s[sel, None], c[sel, None].astype(np.float32), b[sel]], axis=1)
            return r[np.lexsort(r.T[::-1])]

        np.testing.assert_allclose(rows(gb[n], gs[n], gc[n], gsel), rows(rb[n], rs[n], rc[n], rsel),
                                   atol=atol * 10, rtol=1e-6)


SHAPES = [(1, 1, 1, 1, 1), (1, 3, 7, 5, 10), (2, 4, 9, 1, 12), (2, 2, 1, 11, 6), (2, 80, 13, 17, 100),
          (1, 2, 6, 6, 72)]


@pytest.mark.parametrize("n,c,h,w,k", SHAPES)
@pytest.mark.parametrize("apply_sigmoid", [True, False])
def test_torch_matches_numpy(n, c, h, w, k, apply_sigmoid):
    rng = np.random.default_rng(n * 1000 + c * 100 + h * 10 + w)
    hm, wh, reg = _inputs(rng, n, c, h, w, plateau=True)
    if not apply_sigmoid:
        hm = 1 / (1 + np.exp(-hm))
    ref = heatmap_topk_numpy(hm, wh, reg, K=k, apply_sigmoid=apply_sigmoid, stride=4)
    got = heatmap_topk(torch.from_numpy(hm), torch.from_numpy(wh), torch.from_numpy(reg), K=k,
                       apply_sigmoid=apply_sigmoid, stride=4)
    assert_same_detections([t.numpy() for t in got], ref)


@pytest.mark.parametrize("n,c,h,w,k", SHAPES)
def test_onnx_decomposition_matches_numpy(n, c, h, w, k):
    rng = np.random.default_rng(7 + n + c + h + w)
    hm, wh, reg = _inputs(rng, n, c, h, w, plateau=True)
    model = heatmap_topk_onnx_model((n, c, h, w), K=k, stride=4)
    ops = {node.op_type for node in model.graph.node}
    assert "HeatmapTopK" not in ops and {"TopK", "MaxPool", "GatherElements"} <= ops
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["boxes", "scores", "classes"], {"hm": hm, "wh": wh, "reg": reg})
    assert_same_detections(got, heatmap_topk_numpy(hm, wh, reg, K=k, stride=4))


def test_decomposition_dynamic_batch():
    rng = np.random.default_rng(3)
    model = heatmap_topk_onnx_model((1, 3, 8, 6), K=9, stride=8, dynamic_batch=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    hm, wh, reg = _inputs(rng, 3, 3, 8, 6)
    got = sess.run(None, {"hm": hm, "wh": wh, "reg": reg})
    assert_same_detections(got, heatmap_topk_numpy(hm, wh, reg, K=9, stride=8))


def test_equal_neighbours_both_survive():
    hm = np.full((1, 1, 3, 4), -5.0, np.float32)
    hm[0, 0, 1, 1] = hm[0, 0, 1, 2] = 3.0
    wh = np.ones((1, 2, 3, 4), np.float32)
    reg = np.zeros((1, 2, 3, 4), np.float32)
    boxes, scores, classes = heatmap_topk_numpy(hm, wh, reg, K=3, stride=1)
    assert scores[0, 0] == scores[0, 1] == np.float32(1 / (1 + np.exp(-3.0)))
    assert scores[0, 2] == 0.0
    # x+-0.5, y+-0.5 around (1,1) and (2,1)
    np.testing.assert_allclose(boxes[0, :2], [[0.5, 0.5, 1.5, 1.5], [1.5, 0.5, 2.5, 1.5]])


def test_golden_ctdet_decode(golden):
    """golden_vectors.json ``centernet_ctdet_decode``: official rows are in output-map units,
    ours in input pixels (x stride)."""
    case = golden["centernet_ctdet_decode"]
    hm = np.asarray(case["hm_logits"], np.float32)[None]
    wh = np.asarray(case["wh"], np.float32)[None]
    reg = np.asarray(case["reg"], np.float32)[None]
    det = np.asarray(case["detections"], np.float32)
    if det.ndim == 3:
        det = det[0]
    ref = (det[None, :, :4] * 4, det[None, :, 4], det[None, :, 5].astype(np.int32))
    k = int(case["K"])
    got = heatmap_topk_numpy(hm, wh, reg, K=k, stride=4)
    assert_same_detections(got, ref, atol=2e-5 * 4)  # golden values are rounded to 6 decimals
    got_t = heatmap_topk(torch.from_numpy(hm), torch.from_numpy(wh), torch.from_numpy(reg), K=k)
    assert_same_detections([t.numpy() for t in got_t], ref, atol=2e-5 * 4)


def test_no_reg_head_adds_half():
    rng = np.random.default_rng(5)
    hm, wh, _ = _inputs(rng, 1, 2, 5, 5)
    ref = heatmap_topk_numpy(hm, wh, None, K=5, stride=2)
    zero = heatmap_topk_numpy(hm, wh, np.full_like(wh, 0.5), K=5, stride=2)
    assert_same_detections(ref, zero)
    got = heatmap_topk(torch.from_numpy(hm), torch.from_numpy(wh), None, K=5, stride=2)
    assert_same_detections([t.numpy() for t in got], ref)


def test_plugin_node_attributes():
    model = heatmap_topk_onnx_model((1, 80, 16, 16), K=100, apply_sigmoid=True, stride=4, plugin=True)
    nodes = [n for n in model.graph.node if n.op_type == "HeatmapTopK"]
    assert len(nodes) == 1
    node = nodes[0]
    attrs = {a.name: a for a in node.attribute}
    assert attrs["K"].type == attrs["K"].INT and attrs["K"].i == 100
    assert attrs["apply_sigmoid"].i == 1 and attrs["stride"].i == 4
    assert attrs["plugin_version"].s == b"1"
    assert attrs["plugin_namespace"].s == PLUGIN_NAMESPACE.encode()
    assert list(node.input) == ["hm", "wh", "reg"] and len(node.output) == 3
    assert [o.name for o in model.graph.output] == ["boxes", "scores", "classes"]
    assert not any(n.op_type == "TopK" for n in model.graph.node)


def test_decomposition_k_above_trt_limit_raises():
    with pytest.raises(UsageError, match=str(TRT_TOPK_LIMIT)):
        heatmap_topk_onnx_model((1, 1, 64, 64), K=TRT_TOPK_LIMIT + 1)
    # the plugin has its own (larger) limit, so this exports
    model = heatmap_topk_onnx_model((1, 1, 64, 64), K=TRT_TOPK_LIMIT + 1, plugin=True)
    assert model.graph.node[-1].op_type == "HeatmapTopK" or any(
        n.op_type == "HeatmapTopK" for n in model.graph.node)


def test_bad_arguments():
    hm = np.zeros((1, 2, 3, 3), np.float32)
    wh = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(UsageError, match="C\\*H\\*W"):
        heatmap_topk_numpy(hm, wh, wh, K=19)
    with pytest.raises(UsageError, match="wh"):
        heatmap_topk_numpy(hm, wh[:, :, :2], wh, K=3)


def test_onnx_decomposition_fp16():
    """fp16 graph (an fp16 network's heads): ORT vs the reference fed the same fp16-rounded
    probabilities; fp16 tolerance (scores 1e-3, boxes 0.1 px at stride 4)."""
    import io

    import onnx

    class One(torch.nn.Module):
        def forward(self, hm, wh, reg):
            return heatmap_topk(hm, wh, reg, K=12)

    rng = np.random.default_rng(16)
    hm, wh, reg = (a.astype(np.float16) for a in _inputs(rng, 2, 3, 9, 7))
    buf = io.BytesIO()
    torch.onnx.export(One(), tuple(torch.from_numpy(a) for a in (hm, wh, reg)), buf,
                      input_names=["hm", "wh", "reg"], output_names=["boxes", "scores", "classes"],
                      opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [10, 10, 6]  # f16, f16, int32
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"hm": hm, "wh": wh, "reg": reg})
    prob16 = (1 / (1 + np.exp(-hm.astype(np.float64)))).astype(np.float16).astype(np.float32)
    ref = heatmap_topk_numpy(prob16, wh, reg, K=12, apply_sigmoid=False)
    got = [got[0].astype(np.float32), got[1].astype(np.float32), got[2]]
    assert_same_detections(got, ref, atol=1e-2)
