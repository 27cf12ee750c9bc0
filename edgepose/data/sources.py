"""Frame sources: camera index, video file, image folder, single image, rtsp/http stream.

``open_source(camera=N)`` or ``open_source(source=PATH_OR_URL)`` returns an iterable of
``(frame_id, frame_bgr, name)`` with ``.fps``, ``.size`` (W, H), ``.total`` (frames, None when
unknown), ``.frames_read``, ``.skipped`` and ``.stopped_early``.  A stream or video that
stops delivering frames before its announced length ends the iteration cleanly and sets
``stopped_early`` -- the caller keeps what it processed.  Only OpenCV and NumPy are used.
"""
from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from edgepose.errors import SourceError, UsageError

log = logging.getLogger("edgepose")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}
_URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)


def _cv2():
    from edgepose._deps import require

    return require("cv2", extra="pip install opencv-python-headless")


@contextlib.contextmanager
def _quiet_opencv(cv2):
    try:
        logging_api = cv2.utils.logging
        old = logging_api.getLogLevel()
        logging_api.setLogLevel(logging_api.LOG_LEVEL_SILENT)
    except AttributeError:  # very old OpenCV builds
        yield
        return
    try:
        yield
    finally:
        logging_api.setLogLevel(old)


_PNG_END = b"IEND\xaeB`\x82"


def _truncation(data: bytes):
    """Why ``data`` is a cut-off JPEG/PNG (None when complete or another format).  libjpeg
    decodes a truncated JPEG as a half-grey image and only prints a warning, so the end
    markers are checked: JPEG must end in EOI (FF D9), PNG in its IEND chunk."""
    tail = data.rstrip(b"\x00\r\n\t ")  # some writers pad after the end marker
    if data[:2] == b"\xff\xd8" and not tail.endswith(b"\xff\xd9"):
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and not tail.endswith(_PNG_END):
        return "truncated PNG (no IEND chunk)"
    return None


def read_image_checked(path):
    """``(image_bgr, None)`` or ``(None, reason)`` for a file that cannot be used whole:
    unreadable, not an image, or a truncated JPEG/PNG."""
    import numpy as np

    cv2 = _cv2()
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror or exc})"
    reason = _truncation(data)
    if reason:
        return None, reason
    with _quiet_opencv(cv2):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or image.size == 0:
        return None, "not a readable image"
    return image, None


def folder_image_ids(names) -> dict:
    """COCO image id per file name, unique per file: a numeric stem keeps its number
    (``000000000139.jpg`` -> 139); other names, and repeats of a number already taken,
    get ids above the largest numeric stem, in sorted name order."""
    ids, taken = {}, set()
    for name in sorted(names):
        stem = Path(name).stem
        if stem.isdigit() and int(stem) not in taken:
            ids[name] = int(stem)
            taken.add(int(stem))
    next_id = max(taken, default=0) + 1
    for name in sorted(names):
        if name not in ids:
            ids[name] = next_id
            next_id += 1
    return ids


class Source:
    """Base class; subclasses implement ``_frames()`` yielding (frame_bgr, name)."""

    kind = "source"

    def __init__(self, description: str):
        self.description = description
        self.fps: float | None = None
        self.size: tuple | None = None  # (W, H)
        self.total: int | None = None
        self.frames_read = 0
        self.skipped = 0
        self.stopped_early = False
        self._stop = False

    def __iter__(self):
        frame_id = 0
        try:
            for frame, name in self._frames():
                if self._stop:
                    break
                self.frames_read += 1
                if self.size is None:
                    self.size = (int(frame.shape[1]), int(frame.shape[0]))
                yield frame_id, frame, name
                frame_id += 1
        finally:
            self.close()

    def stop(self):
        """Ask the iteration to end before the next frame (e.g. on Ctrl-C or a key press)."""
        self._stop = True

    def close(self):
        pass

    def _frames(self):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.description!r})"


class _CaptureSource(Source):
    """A cv2.VideoCapture: camera, video file or network stream."""

    def __init__(self, target, description, open_error: str):
        super().__init__(description)
        cv2 = _cv2()
        with _quiet_opencv(cv2):  # OpenCV prints its own multi-line warnings on failure
            self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(open_error)
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and fps < 1000 else None
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (w, h) if w > 0 and h > 0 else None

    _first = None  # a frame read ahead at open time (VideoSource), delivered first

    def _frames(self):
        index = 0
        while True:
            if self._first is not None:
                ok, frame, self._first = True, self._first, None
            else:
                ok, frame = self.cap.read()
            if not ok or frame is None:
                if self.total is None or index < self.total:
                    self._ended_at(index)
                return
            yield frame, f"{self._stem}_{index:06d}"
            index += 1

    _stem = "frame"

    def _ended_at(self, index):
        if self.total is not None:  # a file that promised more frames than it delivered
            self.stopped_early = True
            log.warning("edgepose: warning: %s stopped after %d of %d frames; keeping what was read",
                        self.description, index, self.total)

    def close(self):
        if getattr(self, "cap", None) is not None:
            self.cap.release()


class CameraSource(_CaptureSource):
    kind = "camera"

    def __init__(self, index: int):
        self._stem = f"camera{index}"
        super().__init__(
            int(index), f"camera {index}",
            f"cannot open camera {index}: no such device or it is busy; check the index with "
            "`v4l2-ctl --list-devices` (or `ls /dev/video*`), close other programs using it, "
            "or pass --source FILE|DIR|URL instead")

    def _ended_at(self, index):
        self.stopped_early = True
        log.warning("edgepose: warning: %s stopped delivering frames after %d frames", self.description, index)


class StreamSource(_CaptureSource):
    kind = "stream"

    def __init__(self, url: str):
        self._stem = "stream"
        super().__init__(url, url, f"cannot open stream {url}: check the URL, the network and that the "
                                   "server is up (try it with `ffplay URL`)")

    def _ended_at(self, index):
        self.stopped_early = True
        log.warning("edgepose: warning: stream %s stopped after %d frames; keeping what was read",
                    self.description, index)


class VideoSource(_CaptureSource):
    kind = "video"

    def __init__(self, path: Path):
        self._stem = path.stem
        super().__init__(str(path), str(path),
                         f"cannot open video {path}: the file is damaged or its codec is not supported "
                         "by this OpenCV build; convert it with `ffmpeg -i IN -c:v libx264 OUT.mp4`")
        count = int(self.cap.get(_cv2().CAP_PROP_FRAME_COUNT))
        self.total = count if count > 0 else None
        ok, first = self.cap.read()
        if not ok or first is None:  # nothing to process is an error, not an empty success
            self.cap.release()
            raise SourceError(f"video {path} has no readable frames (0 frames); check the file plays, "
                              "or re-encode it with `ffmpeg -i IN -c:v libx264 OUT.mp4`")
        self._first = first


class ImageFolderSource(Source):
    """Every image in a folder, sorted by name.  Unreadable or truncated images are skipped
    (counted, one warning each and a total at the end).  ``image_ids``: name -> unique
    COCO image id (:func:`folder_image_ids`)."""

    kind = "folder"

    def __init__(self, folder: Path):
        super().__init__(str(folder))
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise SourceError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                              "pass a folder with images, a video file or --camera N")
        self.total = len(self.paths)
        self.image_ids = folder_image_ids([p.name for p in self.paths])

    def _frames(self):
        for path in self.paths:
            frame, reason = read_image_checked(path)
            if frame is None:
                self.skipped += 1
                log.warning("edgepose: warning: skipping unreadable image %s: %s", path, reason)
                continue
            yield frame, path.name
        if self.skipped:
            log.warning("edgepose: warning: skipped %d of %d images in %s (unreadable or truncated)",
                        self.skipped, len(self.paths), self.description)


class ImageSource(Source):
    kind = "image"

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.frame, reason = read_image_checked(path)
        if self.frame is None:
            raise SourceError(f"cannot read image {path}: {reason}; check it opens whole in an image viewer "
                              "or copy it again")
        self.total = 1
        self.path = path

    def _frames(self):
        yield self.frame, self.path.name


def open_source(camera: int | None = None, source: str | None = None) -> Source:
    """Open a camera index or a file / folder / URL.  Exactly one of the two is required."""
    if (camera is None) == (source is None):
        raise UsageError("pass exactly one input: --camera N or --source FILE|DIR|URL")
    if camera is not None:
        try:
            index = int(camera)
        except (TypeError, ValueError):
            raise UsageError(f"camera index must be an integer, got {camera!r}") from None
        if index < 0:  # OpenCV crashes on negative indices
            raise UsageError(f"camera index must be >= 0 (N of /dev/videoN), got {index}")
        return CameraSource(index)
    text = str(source)
    if _URL.match(text):
        return StreamSource(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageSource(path)
        return VideoSource(path)
    if text.isdigit():
        raise SourceError(f"{text}: no such file; to read camera {text} pass --camera {text}")
    raise SourceError(f"{text}: no such file, folder or URL; check the path "
                      "(URLs must start with rtsp://, http:// or https://)")
