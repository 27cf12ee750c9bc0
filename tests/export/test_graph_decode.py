"""In-graph decode (edgepose.export.graph_decode): exported wrapped graphs run on ONNX Runtime
must equal the NumPy references of the official decoders (reference README: "Decode
(ctdet_decode)" and "Heatmap to coordinates (heatmap_to_coord_simple)")."""
import io

import numpy as np
import pytest
from helpers.optional import torch_or_skip

torch = torch_or_skip()
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from edgepose.errors import UsageError  # noqa: E402
from edgepose.export.graph_decode import wrap_with_decode  # noqa: E402
from edgepose.metadata import ModelMeta  # noqa: E402
from edgepose.ops import plugin_export  # noqa: E402
from edgepose.ops.heatmap_topk import heatmap_topk_numpy  # noqa: E402

ATOL = 1e-5


# ----------------------------------------------------------------------------- references
def sppe_grid_decode_numpy(hms):
    """Grid part of AlphaPose ``heatmap_to_coord_simple`` (written from the reference README):
    argmax first occurrence, x=y=0 where max <= 0, +-0.25*sign only for 1<x<W-1, 1<y<H-1."""
    hms = np.asarray(hms, np.float32)
    n, j, h, w = hms.shape
    coords = np.zeros((n, j, 2), np.float32)
    scores = np.zeros((n, j, 1), np.float32)
    for b in range(n):
        for k in range(j):
            hm = hms[b, k]
            idx = int(np.argmax(hm.reshape(-1)))
            maxval = hm.reshape(-1)[idx]
            x, y = float(idx % w), float(idx // w)
            if maxval <= 0:
                x = y = 0.0
            px, py = int(x), int(y)
            if 1 < px < w - 1 and 1 < py < h - 1:
                x += 0.25 * np.sign(hm[py, px + 1] - hm[py, px - 1])
                y += 0.25 * np.sign(hm[py + 1, px] - hm[py - 1, px])
            coords[b, k] = (x, y)
            scores[b, k, 0] = maxval
    return coords, scores


# ----------------------------------------------------------------------------- tiny models
class TinyCenterNet(torch.nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.body = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.hm = torch.nn.Conv2d(8, classes, 1)
        self.wh = torch.nn.Conv2d(8, 2, 1)
        self.reg = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = torch.relu(self.body(x))
        return [{"hm": self.hm(y) * 3, "wh": self.wh(y).abs() * 10, "reg": torch.sigmoid(self.reg(y))}]


class TinyPose(torch.nn.Module):
    """Returns fixed heatmaps (a parameter) plus 0 * input, so tests control the maps."""

    def __init__(self, maps):
        super().__init__()
        self.maps = torch.nn.Parameter(torch.as_tensor(maps), requires_grad=False)

    def forward(self, x):
        return {"heatmaps": self.maps + 0 * x.mean()}


def ctdet_meta(classes=3, size=(32, 40)):
    heads = {"hm": {"channels": classes, "stride": 4, "activation": "sigmoid"},
             "wh": {"channels": 2, "stride": 4, "activation": None},
             "reg": {"channels": 2, "stride": 4, "activation": None}}
    return ModelMeta(model="tiny_ctdet", task="ctdet", input_size=size, heads=heads,
                     output_names=list(heads), num_classes=classes)


def export(module, x, names, plugins=False):
    buf = io.BytesIO()
    with plugin_export(plugins):
        torch.onnx.export(module, x, buf, input_names=["input"], output_names=names, opset_version=17,
                          dynamo=False)
    return onnx.load_from_string(buf.getvalue())


def run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})


# ----------------------------------------------------------------------------- ctdet
@pytest.mark.parametrize("batch,size,k", [(1, (32, 40), 20), (2, (36, 20), 45), (1, (4, 4), 3)])
def test_ctdet_dets_match_numpy(batch, size, k):
    torch.manual_seed(batch + k)
    model = TinyCenterNet().eval()
    wrapped, names, updates = wrap_with_decode(model, ctdet_meta(size=size), K=k)
    assert names == ["dets"] and updates["decode"] == "ctdet_topk" and updates["decode_k"] == k
    assert updates["output_names"] == ["dets"]
    x = torch.randn(batch, 3, *size)
    (dets,) = run(export(wrapped.eval(), x, names), x.numpy())
    with torch.no_grad():
        heads = model(x)[-1]
    boxes, scores, classes = heatmap_topk_numpy(heads["hm"].numpy(), heads["wh"].numpy(), heads["reg"].numpy(),
                                                K=k, stride=4)
    assert dets.shape == (batch, k, 6)
    np.testing.assert_allclose(dets[..., 4], scores, atol=ATOL, rtol=0)
    for b in range(batch):  # robust to the order of tied scores (there are no ties above 0 here)
        keep = scores[b] > 0
        ref = np.concatenate([boxes[b], scores[b, :, None], classes[b, :, None]], 1)[keep]
        got = dets[b][dets[b, :, 4] > 0]
        ref = ref[np.lexsort(ref.T[::-1])]
        got = got[np.lexsort(got.T[::-1])]
        np.testing.assert_allclose(got, ref, atol=ATOL, rtol=1e-6)
    # and eager torch gives the same
    with torch.no_grad():
        eager = wrapped(x).numpy()
    np.testing.assert_allclose(np.sort(eager[..., 4], 1), np.sort(dets[..., 4], 1), atol=ATOL)


def test_ctdet_meta_updates_apply():
    meta = ctdet_meta()
    _, _, updates = wrap_with_decode(TinyCenterNet(), meta, K=7)
    new = meta.replace(**updates)
    assert new.decode == "ctdet_topk" and new.decode_k == 7 and new.output_names == ["dets"]
    assert ModelMeta.from_json(new.to_json()).decode_k == 7


def test_ctdet_plugin_export_has_plugin_node():
    wrapped, names, _ = wrap_with_decode(TinyCenterNet().eval(), ctdet_meta(), K=10)
    model = export(wrapped.eval(), torch.randn(1, 3, 32, 40), names, plugins=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("HeatmapTopK") == 1 and "TopK" not in ops


def test_ctdet_k_limits():
    with pytest.raises(UsageError):
        wrap_with_decode(TinyCenterNet(), ctdet_meta(), K=0)
    wrapped, names, _ = wrap_with_decode(TinyCenterNet().eval(), ctdet_meta(size=(256, 256)), K=4000)
    with pytest.raises(UsageError, match="3840"):
        export(wrapped.eval(), torch.randn(1, 3, 256, 256), names)


# ----------------------------------------------------------------------------- sppe
def edge_case_maps(h=10, w=8):
    rng = np.random.default_rng(11)
    maps = rng.normal(0, 0.1, size=(2, 7, h, w)).astype(np.float32)
    b = maps[0]
    b[0] = 0.0; b[0, 4, 3] = 1.0; b[0, 4, 4] = 0.5; b[0, 5, 3] = 0.3   # interior, +x and +y
    b[1] = 0.0; b[1, 5, 1] = 1.0                                         # at x=1: no refinement
    b[2] = -0.5; b[2, 3, 4] = -0.1                                       # all negative -> (0,0)
    b[3] = 0.0; b[3, 6, 5] = 0.9; b[3, 6, 4] = 0.2; b[3, 6, 6] = 0.2     # equal neighbours: sign 0
    b[4] = 0.0; b[4, 0, w - 1] = 2.0                                     # corner
    b[5] = 0.0; b[5, h - 2, 3] = 1.0                                     # y = H-2: no refinement
    b[6] = 0.0; b[6, 2, 2] = 0.7; b[6, 2, 6] = 0.7                       # tie: first occurrence
    return maps


def test_sppe_reference_edge_cases():
    coords, scores = sppe_grid_decode_numpy(edge_case_maps())
    np.testing.assert_allclose(coords[0, :7], [[3.25, 4.25], [1, 5], [0, 0], [5, 6], [7, 0], [3, 8], [2, 2]])
    np.testing.assert_allclose(scores[0, :, 0], [1, 1, -0.1, 0.9, 2, 1, 0.7], atol=1e-7)


def test_sppe_reference_matches_golden(golden):
    """golden ``alphapose_heatmap_to_coord_simple``: back-project our grid coords with the box."""
    case = golden["alphapose_heatmap_to_coord_simple"]
    hms = np.asarray(case["heatmaps_JxHxW"], np.float32)[None]
    x1, y1, x2, y2 = case["bbox_xyxy"]
    coords, scores = sppe_grid_decode_numpy(hms)
    h, w = hms.shape[2:]
    bw, bcx, bcy = x2 - x1, (x1 + x2) / 2, (y1 + y2) / 2
    img = np.stack([(coords[0, :, 0] - w / 2) * bw / w + bcx, (coords[0, :, 1] - h / 2) * bw / w + bcy], 1)
    np.testing.assert_allclose(img, np.asarray(case["coords"], np.float32), atol=1e-4)
    if "maxvals" in case:
        np.testing.assert_allclose(scores[0, :, 0], np.asarray(case["maxvals"], np.float32).reshape(-1), atol=1e-6)


@pytest.mark.parametrize("h,w", [(10, 8), (64, 48)])
def test_sppe_graph_matches_numpy(h, w):
    maps = edge_case_maps(h, w)
    rng = np.random.default_rng(h)
    maps = np.concatenate([maps, rng.normal(size=(2, 5, h, w)).astype(np.float32)], axis=1)
    model = TinyPose(maps).eval()
    meta = ModelMeta(model="tiny_pose", task="sppe", input_size=(h * 4, w * 4),
                     heads={"heatmaps": {"channels": 12, "stride": 4, "activation": None}},
                     output_names=["heatmaps"])
    wrapped, names, updates = wrap_with_decode(model, meta)
    assert names == ["coords", "scores"] and updates["decode"] == "sppe_argmax"
    x = torch.zeros(2, 3, h * 4, w * 4)
    graph = export(wrapped.eval(), x, names)
    ops = {n.op_type for n in graph.graph.node}
    assert ops <= {"Add", "And", "ArgMax", "Cast", "Concat", "Constant", "ConstantOfShape", "Div", "Equal",
                   "Expand", "Flatten", "Gather", "GatherElements", "Greater", "Less", "Max", "Min", "Mod",
                   "Mul", "ReduceMax", "ReduceMean", "Reshape", "Shape", "Sign", "Slice", "Sub", "Unsqueeze",
                   "Where"}, ops
    coords, scores = run(graph, x.numpy())
    ref_c, ref_s = sppe_grid_decode_numpy(maps)
    np.testing.assert_allclose(coords, ref_c, atol=ATOL, rtol=0)
    np.testing.assert_allclose(scores, ref_s, atol=ATOL, rtol=0)
    with torch.no_grad():
        ec, es = wrapped(x)
    np.testing.assert_allclose(ec.numpy(), ref_c, atol=ATOL, rtol=0)


def test_unsupported_task():
    meta = ModelMeta(model="cn", task="cornernet")
    with pytest.raises(UsageError, match="cornernet"):
        wrap_with_decode(torch.nn.Identity(), meta)
