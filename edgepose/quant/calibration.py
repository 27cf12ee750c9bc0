"""Calibration: the calibration-set hash, and the statistics and ranges re-exported from their
modules -- ONNX in, numbers out (no pipeline, no image I/O).

The feeds (lists of ``{input name: array}``) are made by the caller; edgepose's own flows
make them with the runtime's preprocessing in :mod:`edgepose.workflows.calibration_feeds`.

Ranges: :func:`edgepose.quant.statistics.collect_statistics` runs the FP32 graph (batched) with
every float activation as an output and keeps, per tensor, its min/max and a histogram of
``|x|``; :func:`edgepose.quant.ranges.compute_ranges` derives the symmetric clipping threshold
``amax`` with ``minmax``, ``percentile`` (99.99), ``entropy`` (KL divergence, TensorRT's method)
or ``mse``.  One collection serves every method and every mixed-precision variant the
accuracy-budget search builds.
"""
from __future__ import annotations

import hashlib

import numpy as np

from edgepose.quant.ranges import METHODS, compute_ranges, head_tensors, summarize_ranges  # noqa: F401 (re-exported)
from edgepose.quant.statistics import FeedReader, TensorStats, collect_statistics  # noqa: F401 (re-exported)

HOW = ("pass --calib DIR (a folder of 50-500 images like the deployment scene), a video file, "
       "a COCO annotation .json, or --calib synthetic")


# ============================================================================ hashing
def calibration_hash(images, names=None) -> str:
    """SHA-256 over the ordered images (shape, dtype and pixels) and their names."""
    digest = hashlib.sha256()
    for i, image in enumerate(images):
        arr = np.ascontiguousarray(image)
        name = names[i] if names is not None else str(i)
        digest.update(f"{name}|{arr.shape}|{arr.dtype}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()
