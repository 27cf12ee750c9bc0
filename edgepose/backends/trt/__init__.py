"""The TensorRT backend, split the way Polygraphy splits loaders from runners.

* :mod:`.version`      -- supported releases, the lazy ``import tensorrt``, what each release has;
                          ``tensorrt_status()``
* :mod:`.logger`       -- TensorRT messages and build progress -> Python logging
* :mod:`.profiles`     -- optimisation-profile shapes from the ONNX and its metadata
* :mod:`.manifest`     -- the ``X.engine.json`` beside each engine, cache key, compatibility check
* :mod:`.cuda_mem`     -- cuda-python device info, stream, pinned/device buffers
* :mod:`.plugin_libs`  -- loading libedgepose_plugins.so for build and run
* :mod:`.timing_cache` -- the builder's per-TensorRT/GPU timing cache file
* :mod:`.build`        -- ``onnx2engine``: plan -> parse -> configure -> build -> save
* :mod:`.runner`       -- ``TensorRTRunner`` (imports nothing from ``.build``)

Nothing in this package imports TensorRT or cuda-python at module level.  The Python API
these modules use is checked against snapshots of the real bindings (tests/data/trt_api,
``tools/trt_api_snapshot.py``).
"""
