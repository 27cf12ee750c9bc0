"""Overlapped stages: the detector works on frame t+1 while the pose model works on frame t.

    for item, result in run_overlapped(pipe, frames):   # or pipe.run_overlapped(frames)
        ...

A worker thread reads the items, runs :class:`~edgepose.pipeline.detector.Detector` on each
frame and hands ``(item, frame, detections)`` through a bounded queue (``depth`` frames) to
the caller's thread, which runs the pose stage and yields results **in order** -- the same
numbers as calling the pipeline frame by frame, since each stage keeps its own buffers and
clock and only one thread ever uses a stage.  The runners release the GIL while they infer
(ONNX Runtime; TensorRT waits on its own CUDA stream, one per runner instance), so the two
networks really run at the same time; give each ONNX Runtime session its share of the CPU
threads (``Pipeline.from_files(..., overlap=True)`` does).

Errors in the worker (a bad frame, a failing model) are raised in the caller's thread; when
the caller stops early (break, Ctrl-C, an error) the worker is stopped and joined.  The items
are read by the worker, so a source may have been read up to ``depth + 1`` frames past the
last result.
"""
from __future__ import annotations

import queue
import threading

_END = object()


class _Failure:
    def __init__(self, exc):
        self.exc = exc


def _put(q, stop, value) -> bool:
    """Put unless the consumer went away; False when stopped."""
    while not stop.is_set():
        try:
            q.put(value, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _detect_ahead(pipe, items, frame_of, q, stop):
    from edgepose.pipeline.pipeline import check_frame

    try:
        for item in items:
            if stop.is_set():
                return
            frame = check_frame(item if frame_of is None else frame_of(item))
            if not _put(q, stop, (item, frame, pipe.detector(frame))):
                return
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
        _put(q, stop, _Failure(exc))
        return
    _put(q, stop, _END)


def run_overlapped(pipe, items, frame_of=None, depth: int = 2):
    """Yield ``(item, PoseResult)`` for every item of ``items``, in order (see module doc)."""
    depth = max(1, int(depth))
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(target=_detect_ahead, args=(pipe, items, frame_of, q, stop),
                              name="edgepose-detector", daemon=True)
    worker.start()
    try:
        while True:
            got = q.get()
            if got is _END:
                return
            if isinstance(got, _Failure):
                raise got.exc
            item, frame, dets = got
            yield item, pipe.finish(frame, dets)
    finally:
        stop.set()
        worker.join(timeout=10)  # a stuck source read must not hang the caller (daemon thread)
