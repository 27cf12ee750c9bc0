"""``TrtFakes``: a snapshot-made ``tensorrt`` in sys.modules and a fake cudart in cuda_mem, for one test."""
import sys

from fakes.fake_cudart import STREAM, FakeCudart
from fakes.fake_tensorrt import FakeTensorRT

from edgepose.backends.trt import cuda_mem


class TrtFakes:
    """``use(version)`` puts a snapshot-made ``tensorrt`` in sys.modules; cudart is always faked
    (``cudart``: live allocations, mallocs, streams, devices, cc, no_driver)."""

    def __init__(self, monkeypatch, cuda_version="13.0.0"):
        self.monkeypatch = monkeypatch
        self.cuda = self.cudart = FakeCudart(cuda_version)
        monkeypatch.setattr(cuda_mem, "_CUDART", self.cuda.module)
        self.trt = None

    def use(self, version, **kw):
        self.trt = FakeTensorRT(version, **kw)
        self.trt.stream_handle = STREAM
        self.monkeypatch.setitem(sys.modules, "tensorrt", self.trt.module)
        return self.trt
