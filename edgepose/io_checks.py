"""Why a file cannot be written: tell a read-only folder or a full disk from a missing codec.

OpenCV's ``VideoWriter`` only says ``isOpened() == False``; :func:`video_writer_error`
probes the target folder so the message names the real cause.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from edgepose.errors import DependencyError, UsageError

_PROBE_BYTES = 1 << 16  # a video's first frames need at least this much room


def write_problem(folder) -> str | None:
    """None when a small file can be created and written in ``folder``, else the reason
    (e.g. "Permission denied", "No space left on device")."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".edgepose-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0" * _PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return None


def video_writer_error(path, fourcc: str, option: str = "--save"):
    """The error to raise when ``cv2.VideoWriter(path, fourcc)`` did not open."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return UsageError(f"cannot write video {path}: folder {folder} does not exist; create it or pick "
                          f"another {option} path")
    problem = write_problem(folder)
    if problem:
        return UsageError(f"cannot write video {path}: {problem} in {folder}; pick a writable {option} path "
                          "or free some space")
    return DependencyError(f"cannot write video {path}: this OpenCV build has no {fourcc} encoder; try "
                           f"{path.with_suffix('.avi').name}, or install opencv-python-headless>=4.8")
