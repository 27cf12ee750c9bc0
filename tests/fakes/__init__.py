"""Fakes of TensorRT and cuda-python built from snapshots of the real APIs (tests/data/trt_api)."""
