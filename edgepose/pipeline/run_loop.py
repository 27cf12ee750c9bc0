"""The frame loop behind ``edgepose run``: source -> pipeline -> overlay / video / COCO JSON.

:func:`run_source` never loses work: when the stream ends early, a frame cannot be read or
the user presses Ctrl-C, the JSON and the video hold every frame processed so far.  Both
outputs are checked before the first frame (:func:`edgepose.outputs.check_writable`).  The
video is written to a hidden temporary file beside the target, checked to play back with
every frame and renamed at the end; the JSON is written through
:func:`edgepose.outputs.write_or_fallback` (a named file in the temp folder when the target
cannot be written).  A second Ctrl-C while they are written is held until they are whole.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgepose.errors import UsageError
from edgepose.pipeline.timing import StageTimer, format_latency_table
from edgepose.io_checks import video_writer_error
from edgepose.pipeline.caps import warn_caps
from edgepose.outputs import deferred_sigint, interrupt_once

log = logging.getLogger("edgepose")

_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


@dataclass
class RunSummary:
    frames_read: int = 0
    frames_processed: int = 0
    skipped: int = 0
    stopped_early: bool = False
    interrupted: bool = False
    persons: int = 0
    wall_s: float = 0.0
    stats: dict = field(default_factory=dict)
    json_path: str | None = None
    video_path: str | None = None
    overlapped: bool = False  # detector one frame ahead of the pose model

    @property
    def fps(self) -> float:
        """End-to-end frames per second (reading, inference, drawing, writing)."""
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def pipeline_fps(self) -> float:
        """Frames per second of the pipeline stages alone (1000 / mean total ms).  With
        overlapped stages that is one over a frame's latency, not the throughput."""
        total = self.stats.get("total")
        return 1000.0 / total.mean if total is not None and total.mean > 0 else 0.0

    def report(self) -> str:
        lines = [format_latency_table(self.stats)] if self.stats else ["no frame was processed"]
        if self.overlapped and "total" in self.stats:  # stages run side by side: total is a frame's latency
            lines.append(f"FPS: {self.fps:.2f} end-to-end (stages overlapped: a frame takes "
                         f"{self.stats['total'].mean:.1f} ms from detector to keypoints)")
        else:
            lines.append(f"FPS: {self.fps:.2f} end-to-end, {self.pipeline_fps:.2f} pipeline only")
        note = []
        if self.stopped_early:
            note.append("the source stopped early")
        if self.interrupted:
            note.append("interrupted")
        lines.append(f"frames: {self.frames_read} read, {self.frames_processed} processed, {self.skipped} skipped"
                     + (f" ({', '.join(note)})" if note else "") + f"; {self.persons} people")
        if self.json_path:
            lines.append(f"results: {self.json_path}")
        if self.video_path:
            lines.append(f"video: {self.video_path}")
        return "\n".join(lines)


def image_id_for(frame_id: int, name: str, kind: str) -> int:
    """COCO image id: the numeric file stem for images (``000000000139.jpg`` -> 139),
    otherwise the frame number counted from 1 (frame index ``i`` -> ``i + 1``: COCO ids start
    at 1, and ``edgepose data clip`` annotates frame ``i`` as image ``i + 1``)."""
    if kind in ("folder", "image"):
        stem = Path(name).stem
        if stem.isdigit():
            return int(stem)
    return int(frame_id) + 1


def _image_id(source, frame_id, name) -> int:
    """Folders assign unique ids per file (:func:`edgepose.data.sources.folder_image_ids`)."""
    ids = getattr(source, "image_ids", None)
    return ids[name] if ids and name in ids else image_id_for(frame_id, name, source.kind)


class _VideoOut:
    """cv2.VideoWriter into a hidden temp file beside ``path``; :meth:`finish` checks that the
    file plays back with every frame (a full disk makes OpenCV write a broken file silently)
    and only then renames it into place."""

    def __init__(self, path, fps):
        from edgepose.outputs import check_writable

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise UsageError(f"--save {self.path}: unsupported video type; use .mp4 or .avi")
        check_writable(self.path, "--save")
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = float(fps) if fps else 25.0
        self.fourcc = _FOURCC[suffix]
        self.writer = None
        self.frames = 0

    def write(self, image):
        import cv2

        if self.writer is None:
            from edgepose.outputs import output_error

            h, w = image.shape[:2]
            self.size = (w, h)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise output_error(exc, self.path) from None
            self._quiet = _QuietOpenCV()  # a full disk is reported once by finish(), not per frame
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self.writer.isOpened():
                self.writer = None
                raise video_writer_error(self.path, self.fourcc)
        if (image.shape[1], image.shape[0]) != self.size:  # folders of mixed sizes
            image = cv2.resize(image, self.size)
        self.writer.write(image)
        self.frames += 1

    def finish(self) -> str | None:
        """Release, verify, rename; OutputError (and no file at ``path``) when it is broken."""
        from edgepose.errors import OutputError

        if self.writer is None:
            return None
        self.writer.release()
        self.writer = None
        self._quiet.restore()
        readable = _readable_frames(self.tmp, self.frames)
        if readable != self.frames:
            self.abort()
            raise OutputError(f"cannot write video {self.path}: the encoder wrote a broken file "
                              f"({readable} of {self.frames} frames readable; {_space_note(self.path)}); "
                              "no video was saved")
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            from edgepose.outputs import output_error

            self.abort()
            raise output_error(exc, self.path) from None
        return str(self.path)

    def abort(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            self._quiet.restore()
        if self.tmp.exists():
            self.tmp.unlink()


class _QuietOpenCV:
    """OpenCV's per-frame "Failed to write frame" warnings off while the video is written."""

    def __init__(self):
        from cv2.utils import logging as cv_logging

        self._api = cv_logging
        self._level = cv_logging.getLogLevel()
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)

    def restore(self):
        if self._level is not None:
            self._api.setLogLevel(self._level)
            self._level = None


def _readable_frames(path, expected: int) -> int:
    """How many of ``expected`` frames the file plays back: the container's frame count, and
    the first and last frames must decode (a cut file has no index or no last frame)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count != expected:
            return max(count, 0)
        ok_first, _ = cap.read()
        if expected > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, expected - 1)
            ok_last, _ = cap.read()
        else:
            ok_last = ok_first
        return expected if ok_first and ok_last else (1 if ok_first else 0)
    finally:
        cap.release()


def _space_note(path) -> str:
    import shutil

    try:
        free = shutil.disk_usage(Path(path).absolute().parent).free
    except OSError:
        return "the folder cannot be read"
    return "the disk is full" if free < (1 << 20) else f"{free / 2**20:.0f} MiB free"


def _write_json(path, records):
    from edgepose.outputs import write_or_fallback

    def dump(tmp):
        with open(tmp, "w") as fh:
            json.dump(records, fh)

    return write_or_fallback(path, dump, what=f"results of {len(records)} detections")


def _finish_outputs(summary, video, json_path, records, ok: bool):
    """Write every output that has work in it, each on its own: a broken video never costs the
    JSON.  Ctrl-C is held meanwhile.  Raises the first OutputError after all were tried."""
    from edgepose.errors import OutputError

    errors = []
    with deferred_sigint():
        if video is not None:
            try:
                summary.video_path = video.finish() if (ok or video.frames) else video.abort()
            except OutputError as exc:
                errors.append(exc)
        if json_path and (ok or records):
            try:
                summary.json_path = _write_json(json_path, records)
            except OutputError as exc:
                errors.append(exc)
    if len(errors) > 1:
        raise OutputError("; ".join(str(e) for e in errors))
    if errors:
        raise errors[0]


def run_source(pipeline, source, show: bool = False, save=None, json_path=None, progress: bool = True,
               kp_threshold: float = 0.2, max_frames: int | None = None, on_result=None,
               overlap: bool = False) -> RunSummary:
    """Run ``pipeline`` on every frame of ``source`` (from :func:`edgepose.data.sources.open_source`).

    ``show``: an OpenCV window (q / Esc stops); ``save``: overlay video path; ``json_path``:
    COCO keypoint results; ``on_result(frame_id, name, frame, result)``: a hook per frame;
    ``overlap``: the detector works one frame ahead of the pose model
    (:meth:`Pipeline.run_overlapped`; same results).  Returns a :class:`RunSummary`; outputs
    hold every processed frame even after Ctrl-C or a stream that stopped early.
    """
    if overlap and not hasattr(pipeline, "run_overlapped"):
        raise UsageError(f"{type(pipeline).__name__} cannot overlap its stages; drop --overlap")
    summary = RunSummary(overlapped=bool(overlap))
    timer = StageTimer()
    records = []
    if json_path:
        from edgepose.outputs import check_writable

        check_writable(json_path, "--json")
    video = _VideoOut(save, source.fps) if save else None
    if show:
        _check_gui()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=source.total, unit="frame", desc=Path(str(source.description)).name or "frames",
                   dynamic_ncols=True, leave=True)
    start = time.perf_counter()
    ok = False
    with interrupt_once() as guard:  # a second Ctrl-C never cuts the writing of the outputs
        try:
            try:
                _process_frames(_results(pipeline, source, overlap), source, summary, timer, records, video,
                                show, json_path, bar, kp_threshold, max_frames, on_result, guard)
            except KeyboardInterrupt:
                guard.stopping = True
                summary.interrupted = True
                log.warning("edgepose: interrupted; writing the %d frames processed so far",
                            summary.frames_processed)
            ok = True
        finally:
            guard.stopping = True
            summary.wall_s = time.perf_counter() - start
            if bar is not None:
                bar.close()
            summary.frames_read = source.frames_read
            summary.skipped = source.skipped
            summary.stopped_early = bool(source.stopped_early)
            summary.stats = timer.stats()
            try:
                _finish_outputs(summary, video, json_path, records, ok)
            finally:
                if show:
                    _close_windows()
    warn_caps(pipeline)
    return summary


def _results(pipeline, source, overlap: bool):
    """``((frame_id, frame, name), result)`` per frame of the source, serial or overlapped."""
    if overlap:
        yield from pipeline.run_overlapped(source, frame_of=lambda item: item[1])
        return
    for item in source:
        yield item, pipeline(item[1])


def _process_frames(results, source, summary, timer, records, video, show, json_path, bar, kp_threshold,
                    max_frames, on_result, guard):
    from edgepose.pipeline.visualize import draw_poses

    live_fps = None
    t0 = time.perf_counter()
    for (frame_id, frame, name), result in results:
        overlay = draw_poses(frame, result, fps=live_fps, kp_threshold=kp_threshold) \
            if video is not None or show else None
        with guard.hold():  # a frame is in the video, the JSON and the counts, or in none of them
            if video is not None:
                video.write(overlay)
            if json_path:
                records.extend(result.to_coco(_image_id(source, frame_id, name)))
            timer.merge_frame(result.timings)
            summary.frames_processed += 1
            summary.persons += len(result)
        if show and _show(overlay):
            source.stop()
        if on_result is not None:
            on_result(frame_id, name, frame, result)
        t1 = time.perf_counter()
        dt, t0 = t1 - t0, t1
        live_fps = 1.0 / dt if live_fps is None else 0.9 * live_fps + 0.1 / max(dt, 1e-9)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(fps=f"{live_fps:.1f}", people=len(result), refresh=False)
        if max_frames is not None and summary.frames_processed >= max_frames:
            source.stop()
            break  # overlapped: frames already read ahead are not processed


def _check_gui():
    import cv2

    try:
        cv2.namedWindow("edgepose", cv2.WINDOW_NORMAL)
    except cv2.error:
        raise UsageError("--show needs an OpenCV build with GUI support (pip install opencv-python, "
                         "not -headless) and a display; use --save out.mp4 instead") from None


def _show(image) -> bool:
    """Show a frame; True when the user asked to stop (q or Esc)."""
    import cv2

    cv2.imshow("edgepose", image)
    return (cv2.waitKey(1) & 0xFF) in (ord("q"), 27)


def _close_windows():
    import cv2

    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass
