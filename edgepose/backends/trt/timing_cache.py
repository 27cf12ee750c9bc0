"""The builder's timing cache: one file per TensorRT version and GPU type, shared by all builds
of a user, read before and written (atomically) after each build."""
from __future__ import annotations

import os
from pathlib import Path


def default_timing_cache(trt_version: str, compute_capability: str) -> Path:
    """One cache per TensorRT version and GPU type, shared by all builds of this user."""
    root = Path(os.environ.get("EDGEPOSE_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if not os.environ.get("EDGEPOSE_CACHE"):
        root = root / "edgepose"
    cc = str(compute_capability).replace(".", "")
    return root / f"trt-{trt_version}-sm{cc}.timing"


def attach_timing_cache(config, path: Path | None, logger):
    """Give ``config`` the cache read from ``path`` (empty when absent; a fresh one when TensorRT
    rejects the file: ``set_timing_cache`` returns False for another TensorRT/GPU's cache).
    Returns the ITimingCache, which must outlive the build; None when ``path`` is None (off)."""
    if path is None:
        return None
    data = b""
    if path.is_file():
        data = path.read_bytes()
    cache = config.create_timing_cache(data)
    ok = config.set_timing_cache(cache, False)
    if not ok and data:
        logger.warning("edgepose: timing cache %s does not fit this TensorRT/GPU; starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    elif data:
        logger.info("reusing timing cache %s", path)
    return cache


def save_timing_cache(config, path: Path | None, logger):
    """Write the config's timing cache to ``path`` atomically (a failure only warns)."""
    if path is None:
        return
    from edgepose.io_utils import atomic_path

    cache = config.get_timing_cache()
    if cache is None:
        return
    blob = cache.serialize()
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(bytes(memoryview(blob)))
    except OSError as exc:  # a read-only home must not fail the build
        logger.warning("edgepose: could not save the timing cache to %s (%s)", path, exc)
