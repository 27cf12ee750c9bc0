"""TensorRT engines against ONNX Runtime on the same inputs (needs a CUDA GPU, TensorRT 10.3-11.x
and cuda-python; the folder is collected only where a CUDA GPU is, and this module skips with
the reason when TensorRT cannot build here).

A small detector (CenterNet-style hm/wh/reg heads, static 1x3x64x64) and a small pose net
(dynamic batch, 17 heatmaps) are exported from PyTorch, turned into FP16 (casts) and INT8
(Q/DQ, calibrated on the same kind of input) ONNX by edgepose.quant, built into engines by
onnx2engine and run by TensorRTRunner.  FP16 must match ONNX Runtime on the same FP16 graph to
~1e-2 relative; INT8 is judged by agreement (cosine >= 0.98 per output).
"""
import numpy as np
import onnx
import pytest

from edgepose.backends.trt.version import tensorrt_status
from edgepose.compare import compare_arrays
from helpers.optional import torch_or_skip

torch = torch_or_skip()
_OK, _WHY = tensorrt_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _OK, reason=f"TensorRT engines cannot be built here: {_WHY}")]

from edgepose.metadata import ModelMeta, attach_metadata  # noqa: E402

DET_META = ModelMeta(model="tiny_det", task="ctdet", input_size=(64, 64), batch=1, output_names=["hm", "wh", "reg"],
                     heads={"hm": {"channels": 2, "stride": 4, "activation": "sigmoid"},
                            "wh": {"channels": 2, "stride": 4, "activation": None},
                            "reg": {"channels": 2, "stride": 4, "activation": None}}, num_classes=2)
POSE_META = ModelMeta(model="tiny_pose", task="sppe", input_size=(64, 48), batch=None, channel_order="RGB",
                      output_names=["heatmaps"], num_classes=1)


def _det():
    torch.manual_seed(0)
    nn = torch.nn

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU())
            self.hm, self.wh, self.reg = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 2, 3, 1, 1), nn.Conv2d(32, 2, 1)

        def forward(self, x):
            f = self.body(x)
            return self.hm(f), self.wh(f), self.reg(f)

    return Det().eval()


def _pose():
    torch.manual_seed(1)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 17, 1)).eval()


def _export(model, path, shape, outputs, meta, dynamic):
    dyn = {n: {0: "n"} for n in ["input", *outputs]} if dynamic else None
    torch.onnx.export(model, (torch.zeros(*shape),), str(path), input_names=["input"], output_names=outputs,
                      dynamic_axes=dyn, opset_version=17, dynamo=False)
    proto = onnx.load(str(path))
    attach_metadata(proto, meta)
    onnx.save(proto, str(path))
    return path


def _inputs(shape, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, size=shape).astype(np.float32) for _ in range(n)]


def _precision_onnx(fp32, tag, calib_shape, out_dir):
    out = out_dir / fp32.name.replace(".onnx", f".{tag}.onnx")
    meta = ModelMeta.from_json(next(p.value for p in onnx.load(str(fp32)).metadata_props if p.key == "edgepose"))
    if tag == "fp16":
        from edgepose.quant.fp16 import convert_fp16

        convert_fp16(str(fp32), out, meta=meta.replace(precision="fp16"))
        return out
    from edgepose.quant.calibration import collect_statistics, compute_ranges
    from edgepose.quant.int8 import prepare_fp32, quantize_int8

    model, _ = prepare_fp32(str(fp32))
    feeds = [{"input": x} for x in _inputs(calib_shape, 16, seed=7)]
    stats = collect_statistics(model, feeds, progress=False)
    ranges = compute_ranges(stats, "minmax")
    quantize_int8(model, ranges, out, meta=meta)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    det = _export(_det(), d / "det.onnx", (1, 3, 64, 64), ["hm", "wh", "reg"], DET_META, dynamic=False)
    pose = _export(_pose(), d / "pose.onnx", (2, 3, 64, 48), ["heatmaps"], POSE_META, dynamic=True)
    return d, det, pose


def _ort(path, feed):
    from edgepose.backends.onnxruntime import ORTRunner

    return ORTRunner(path, providers=["CPUExecutionProvider"], disable_cse=True).infer(feed)


@pytest.mark.parametrize("tag", ["fp16", "int8"])
def test_engines_agree_with_onnxruntime(models, tag):
    from edgepose.backends.trt.manifest import read_manifest
    from edgepose.backends.trt.runner import TensorRTRunner
    from edgepose.backends.trt.build import onnx2engine

    d, det_fp32, pose_fp32 = models
    det = _precision_onnx(det_fp32, tag, (1, 3, 64, 64), d)
    pose = _precision_onnx(pose_fp32, tag, (4, 3, 64, 48), d)
    cache = d / f"{tag}.timing"
    det_engine = onnx2engine(det, workspace_mb=256, timing_cache=cache)
    pose_engine = onnx2engine(pose, workspace_mb=256, pose_batch=(1, 8, 32), timing_cache=cache)
    assert cache.is_file() and cache.stat().st_size > 0
    m = read_manifest(pose_engine)
    assert m.precision == tag and m.max_batch == 32 and m.meta.task == "sppe"

    checks = [(det_engine, det, _inputs((1, 3, 64, 64), 2, seed=11)),
              (pose_engine, pose, _inputs((1, 3, 64, 48), 1, 12) + _inputs((8, 3, 64, 48), 1, 13)
               + _inputs((32, 3, 64, 48), 1, 14) + _inputs((3, 3, 64, 48), 1, 15))]
    for engine, onnx_path, xs in checks:
        with TensorRTRunner(engine) as runner:
            assert runner.backend == "tensorrt" and [o.name for o in runner.outputs] == \
                [o.name for o in onnx.load(str(onnx_path)).graph.output]
            for x in xs:
                got = runner.infer({"input": x})
                want = _ort(onnx_path, {"input": x})
                for name, ref in want.items():
                    out = got[name]
                    assert out.shape == ref.shape, (engine.name, name)
                    row = compare_arrays(name, ref, out, tolerance=1e-2, scale_floor=1e-3)
                    if tag == "fp16":
                        assert row.ok, f"{engine.name}:{name} batch {x.shape[0]}: rel err {row.max_rel:.3g}"
                    else:
                        assert row.cosine >= 0.98, \
                            f"{engine.name}:{name} batch {x.shape[0]}: cosine {row.cosine:.4f}"


def test_build_is_cached_and_runner_limits(models):
    import time

    from edgepose.backends.trt.runner import TensorRTRunner
    from edgepose.backends.trt.build import onnx2engine
    from edgepose.errors import UsageError

    d, _, pose_fp32 = models
    pose = _precision_onnx(pose_fp32, "fp16", None, d)
    engine = onnx2engine(pose, workspace_mb=256, pose_batch=(1, 2, 4), timing_cache=False, force=True)
    stamp = engine.stat().st_mtime_ns
    time.sleep(0.01)
    assert onnx2engine(pose, workspace_mb=256, pose_batch=(1, 2, 4), timing_cache=False) == engine
    assert engine.stat().st_mtime_ns == stamp  # skipped: same key
    runner = TensorRTRunner(engine)
    assert runner.max_batch == 4
    with pytest.raises(UsageError, match="outside the engine's profile"):
        runner.infer({"input": np.zeros((5, 3, 64, 48), np.float32)})
    a = runner.infer({"input": _inputs((4, 3, 64, 48), 1, 3)[0]})["heatmaps"]
    b = runner.infer({"input": _inputs((4, 3, 64, 48), 1, 3)[0]})["heatmaps"]
    np.testing.assert_array_equal(a, b)  # buffers reused, deterministic
    runner.close()
    runner.close()
