"""The pipeline's speed paths (issue 15 item 3) against the code they replace.

* ``normalize_into`` by 256-entry tables (OpenCV LUT) equals the per-pixel arithmetic
  (``pixel * scale / std - mean / std`` in float32/float16) bit for bit, in both channel
  orders and with AlphaPose's skip-scale quirk; both equal ``normalize_to_chw`` to 1e-5.
"""

import numpy as np
import pytest

from edgepose.metadata import ModelMeta
from edgepose.pipeline import preprocess


def _meta(order):
    return ModelMeta(model="test", task="sppe", input_size=(16, 12), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     scale=1 / 255.0, channel_order=order)


def _arithmetic(images, out, meta, skip=None):
    """The arithmetic path of normalize_into (a non-contiguous output buffer takes it)."""
    wide = np.empty(out.shape[:-1] + (out.shape[-1] * 2,), out.dtype)
    view = wide[..., ::2]
    assert not preprocess._lut_applies(images, view)
    preprocess.normalize_into(images, view, meta, skip_scale=skip)
    return np.ascontiguousarray(view)


@pytest.mark.parametrize("order", ["RGB", "BGR"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_lookup_normalisation_is_bit_identical(order, dtype):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 12, 3), dtype=np.uint8)
    images[0, 0, :, 0] = np.arange(12) + 244  # the extremes of the table are reached
    images[0, 1, :, 1] = np.arange(12)
    meta = _meta(order)
    skip = np.array([False, True, False])
    for skip_scale in (None, skip):
        out = np.empty((3, 3, 16, 12), dtype)
        assert preprocess._lut_applies(images, out)
        got = preprocess.normalize_into(images, out, meta, skip_scale=skip_scale)
        assert got is out
        ref = _arithmetic(images, np.empty_like(out), meta, skip_scale)
        assert np.array_equal(got, ref)
    ref_chw = np.stack([preprocess.normalize_to_chw(im, meta) for im in images])
    out = preprocess.normalize_into(images, np.empty((3, 3, 16, 12), np.float32), meta)
    assert np.abs(out - ref_chw).max() <= 1e-5
