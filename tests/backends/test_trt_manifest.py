"""Engine manifest: round trip, cache key (what changes it and what does not), the up-to-date
check `build` uses to skip work, and the compatibility check `run` does before loading."""
import json

import pytest

from edgepose.backends.trt.manifest import (EngineManifest, cache_key, check_compatible, is_up_to_date,
                                               manifest_path, read_manifest, write_manifest)
from edgepose.errors import EngineError
from edgepose.io_utils import sha256_file
from edgepose.metadata import ModelMeta

OPTIONS = {"profiles": {"input": [[1, 3, 256, 192], [8, 3, 256, 192], [32, 3, 256, 192]]},
           "workspace_mb": 2048, "dla_core": None, "gpu_fallback": None, "opt_level": None,
           "calib_hash": "c0ffee", "plugins": []}


def _manifest(tmp_path, **changes):
    onnx = tmp_path / "pose.int8.onnx"
    if not onnx.exists():
        onnx.write_bytes(b"onnx bytes v1")
    engine = tmp_path / "pose.int8.engine"
    engine.write_bytes(b"engine bytes")
    import hashlib

    meta = ModelMeta(model="fastpose_res50", task="sppe", input_size=(256, 192), batch=None, precision="int8")
    fields = dict(engine=engine.name, tensorrt_version="10.3.0.30", compute_capability="8.7",
                  onnx_sha256=sha256_file(onnx), precision="int8", gpu_name="Orin", cuda_runtime="12.6",
                  onnx_name=onnx.name, engine_sha256=hashlib.sha256(b"engine bytes").hexdigest(),
                  engine_bytes=len(b"engine bytes"), calib_hash="c0ffee",
                  inputs=[{"name": "input", "shape": [None, 3, 256, 192], "dtype": "float32",
                           "profile": OPTIONS["profiles"]["input"]}],
                  outputs=[{"name": "heatmaps", "shape": [None, 17, 64, 48], "dtype": "float32"}],
                  build_options=dict(OPTIONS, timing_cache="/tmp/x.timing"), meta_json=meta.to_json())
    fields["cache_key"] = cache_key(fields["onnx_sha256"], fields["tensorrt_version"], fields["compute_capability"],
                                    OPTIONS)
    fields.update(changes)
    return engine, EngineManifest(**fields)


def test_round_trip_keeps_every_field(tmp_path):
    engine, m = _manifest(tmp_path)
    path = write_manifest(m, engine)
    assert path == manifest_path(engine) == tmp_path / "pose.int8.engine.json"
    back = read_manifest(engine)
    assert back == m
    assert back.meta == ModelMeta.from_json(m.meta_json) and back.meta.task == "sppe"
    assert back.max_batch == 32 and back.profile("input")[1] == [8, 3, 256, 192]
    # plain JSON a human (or jq) can read
    data = json.loads(path.read_text())
    assert data["tensorrt_version"] == "10.3.0.30" and data["compute_capability"] == "8.7"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file


def test_cache_key_changes_with_what_changes_the_engine(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph v1")
    sha1 = sha256_file(onnx)
    base = cache_key(sha1, "10.3.0.30", "8.7", OPTIONS)
    onnx.write_bytes(b"graph v2")
    assert cache_key(sha256_file(onnx), "10.3.0.30", "8.7", OPTIONS) != base
    assert cache_key(sha1, "10.3.0.26", "8.7", OPTIONS) != base
    assert cache_key(sha1, "11.1.0", "8.7", OPTIONS) != base
    assert cache_key(sha1, "10.3.0.30", "8.6", OPTIONS) != base
    for name, value in [("workspace_mb", 1024), ("dla_core", 0), ("calib_hash", "other"), ("opt_level", 5),
                        ("plugins", ["HeatmapTopK"]),
                        ("profiles", {"input": [[1, 3, 256, 192], [8, 3, 256, 192], [16, 3, 256, 192]]})]:
        assert cache_key(sha1, "10.3.0.30", "8.7", dict(OPTIONS, **{name: value})) != base, name


def test_cache_key_ignores_what_does_not(tmp_path):
    base = cache_key("ab" * 32, "10.3.0.30", "8.7", OPTIONS)
    noisy = dict(OPTIONS, timing_cache="/elsewhere.timing", force=True, verbose=True, device=0)
    assert cache_key("ab" * 32, "10.3.0.30", "8.7", noisy) == base
    # tuples vs lists and key order do not matter
    tupled = dict(reversed(list(OPTIONS.items())))
    tupled["profiles"] = {"input": tuple(tuple(s) for s in OPTIONS["profiles"]["input"])}
    assert cache_key("ab" * 32, "10.3.0.30", "8.7", tupled) == base


def test_up_to_date_only_when_key_and_engine_bytes_match(tmp_path):
    engine, m = _manifest(tmp_path)
    ok, why = is_up_to_date(engine, m.cache_key)  # engine there, manifest not yet
    assert not ok and "no manifest" in why
    write_manifest(m, engine)
    assert is_up_to_date(engine, m.cache_key) == (True, "")
    ok, why = is_up_to_date(engine, cache_key(m.onnx_sha256, "10.3.0.30", "8.7", dict(OPTIONS, workspace_mb=1)))
    assert not ok and "changed" in why
    engine.write_bytes(b"engine bytez")  # same size, other bytes
    ok, why = is_up_to_date(engine, m.cache_key)
    assert not ok and "SHA-256" in why
    engine.unlink()
    assert is_up_to_date(engine, m.cache_key) == (False, "no engine yet")


@pytest.mark.parametrize("trt_here, cc_here, words", [
    ("10.3.0.26", "8.7", ["TensorRT 10.3.0.30 built it", "10.3.0.26"]),
    ("11.1.0", "8.7", ["TensorRT 10.3.0.30 built it", "11.1.0"]),
    ("10.3.0.30", "8.6", ["compute capability 8.7", "(Orin)", "8.6"]),
])
def test_incompatible_engine_is_refused_with_rebuild_hint(tmp_path, trt_here, cc_here, words):
    engine, m = _manifest(tmp_path)
    with pytest.raises(EngineError) as err:
        check_compatible(m, trt_here, cc_here, engine)
    text = str(err.value)
    for word in words:
        assert word in text
    assert "edgepose build --int8 --out" in text and "--force" in text and "pose.int8.onnx" in text


def test_same_version_spelled_differently_is_accepted(tmp_path):
    _, m = _manifest(tmp_path, tensorrt_version="10.3.0")
    check_compatible(m, "10.3.0.0", "8.7")
    check_compatible(m, "10.3.0+cuda12", "8.7")
    with pytest.raises(EngineError):
        check_compatible(m, "10.3.1", "8.7")


def test_missing_or_broken_manifest(tmp_path):
    engine = tmp_path / "det.engine"
    engine.write_bytes(b"x")
    with pytest.raises(EngineError, match="no manifest det.engine.json.*--force"):
        read_manifest(engine)
    manifest_path(engine).write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        read_manifest(engine)
    manifest_path(engine).write_text(json.dumps({"schema": 99, "engine": "det.engine"}))
    with pytest.raises(EngineError, match="newer edgepose"):
        read_manifest(engine)
    manifest_path(engine).write_text(json.dumps({"engine": "det.engine", "tensorrt_version": "10.3"}))
    with pytest.raises(EngineError, match="compute_capability"):
        read_manifest(engine)


def test_manifest_without_profile_reports_static_batch(tmp_path):
    _, m = _manifest(tmp_path, inputs=[{"name": "input", "shape": [1, 3, 512, 512], "dtype": "float32"}],
                     meta_json=None)
    assert m.max_batch == 1 and m.meta is None and m.profile("input") is None
