"""Output safety: check every output before any work, never report success for a broken file,
never lose finished work.

* :func:`check_outputs` -- before a command does any work: an output must not be one of its
  inputs (or another output), and its folder must be writable (read-only file systems and
  permissions are found here, not after processing every frame).  Nothing is created.
* :func:`write_or_fallback` -- write a result file whole (via :func:`edgepose.io_utils.atomic_path`);
  when that fails (disk full, folder gone read-only) the results go to a named file in the
  temporary folder and the error says where they are.
* :func:`staged_dir` -- a set of files (``edgepose build``) is written into a hidden sibling
  folder and swapped into place at the end; on failure or Ctrl-C the old set is untouched.
* :func:`deferred_sigint` -- Ctrl-C while files are being finalised is held until they are
  written, so a second Ctrl-C never leaves half a file or a ``.partial`` behind.
* :func:`describe_os_error` -- one line for an ``OSError``: the path, the cause and what to do.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from edgepose.errors import OutputError, UsageError

log = logging.getLogger("edgepose")

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or write to another disk",
    errno.EDQUOT: "the disk quota is exhausted; free some space or write elsewhere",
    errno.EFBIG: "the file is larger than this file system or process allows; write elsewhere",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.EIO: "input/output error from the device; check the disk",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder; give a file name",
    errno.ENOENT: "no such file or folder",
}
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EIO, errno.ENOTDIR, errno.EISDIR})


def describe_os_error(exc: OSError, path=None) -> str:
    """``PATH: cause (hint)`` for an OSError; ``path`` replaces the (maybe hidden temp) name."""
    where = path if path is not None else (exc.filename or "")
    cause = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno)
    text = f"{where}: {cause}" if where else cause
    return f"{text} ({hint})" if hint and hint != cause.lower() else text


def output_error(exc: OSError, path) -> OutputError:
    return OutputError(f"cannot write {describe_os_error(exc, path)}")


# ---------------------------------------------------------------------------- before any work
def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _first_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable(path, option: str, is_dir: bool = False):
    """Refuse (OutputError) an output path that cannot be written, creating nothing."""
    path = Path(path)
    if path.exists() and path.is_dir() != is_dir:
        kind = "a folder" if path.is_dir() else "a file"
        raise UsageError(f"{option} {path} is {kind}; give a {'folder' if is_dir else 'file'} path")
    anchors = [_first_existing(path.parent)]
    if is_dir and path.is_dir():
        anchors.append(path)
    for anchor in anchors:
        if not anchor.is_dir():
            raise OutputError(f"cannot write {option} {path}: {anchor} is a file, not a folder")
        if not os.access(anchor, os.W_OK | os.X_OK):
            readonly = bool(os.statvfs(anchor).f_flag & os.ST_RDONLY)
            cause = errno.EROFS if readonly else errno.EACCES
            raise OutputError(f"cannot write {option} {describe_os_error(OSError(cause, os.strerror(cause)), path)}"
                              "; nothing was processed")


def check_outputs(inputs: dict, outputs: dict, dirs=()):
    """Before any work: no output (option -> path) may be an input (option -> path) or another
    output, and each must be writable.  ``dirs``: options whose value is a folder."""
    given_in = {opt: Path(p) for opt, p in inputs.items() if p is not None and str(p)}
    given_out = {opt: Path(p) for opt, p in outputs.items() if p is not None and str(p)}
    seen = {}
    for opt, path in given_out.items():
        for in_opt, in_path in given_in.items():
            if path.absolute() == in_path.absolute() or _same_file(path, in_path):
                raise UsageError(f"{opt} {path} is the same file as {in_opt}; it would overwrite the input. "
                                 f"Choose another {opt} path")
        key = os.path.normcase(str(path.absolute()))
        if key in seen:
            raise UsageError(f"{opt} and {seen[key]} are the same file {path}; give each its own path")
        seen[key] = opt
        check_writable(path, opt, is_dir=opt in dirs)


# ---------------------------------------------------------------------------- writing results
def fallback_path(path) -> Path:
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"edgepose-{path.stem}-{stamp}-{os.getpid()}{path.suffix}"


def write_or_fallback(path, write, what: str = "results") -> str:
    """``write(tmp_path)`` then rename to ``path``.  When that fails for a write reason the same
    content goes to :func:`fallback_path` and OutputError names both; returns ``str(path)``."""
    from edgepose.io_utils import atomic_path

    try:
        with atomic_path(path) as tmp:
            write(tmp)
        return str(path)
    except OutputError as exc:
        first = str(exc)
    spare = fallback_path(path)
    try:
        with atomic_path(spare) as tmp:
            write(tmp)
    except OutputError as exc:
        raise OutputError(f"{first}; the {what} could not be saved to {spare} either ({exc})") from None
    raise OutputError(f"{first}; the {what} were saved to {spare} instead")


def write_each(jobs) -> list:
    """Write each ``(path, text, what)`` with :func:`write_or_fallback` (``path`` None: skipped),
    every one even when an earlier one fails; Ctrl-C waits.  Returns the written paths; raises
    one OutputError naming every failure and where its content went."""
    written, errors = [], []
    with deferred_sigint():
        for path, text, what in jobs:
            if not path:
                continue
            try:
                written.append(write_or_fallback(path, lambda tmp, t=text: Path(tmp).write_text(t), what=what))
            except OutputError as exc:
                errors.append(str(exc))
    if errors:
        raise OutputError("; ".join(errors))
    return written


# ---------------------------------------------------------------------------- Ctrl-C
@contextlib.contextmanager
def deferred_sigint():
    """Hold SIGINT (Ctrl-C) until the block ends; a held Ctrl-C is logged, not raised, since
    the caller is already finishing.  Outside the main thread this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def hold(signum, frame):
        received.append(signum)
        log.warning("edgepose: still writing the outputs; they will be complete in a moment")

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class interrupt_once:  # noqa: N801 -- used as a context manager, like contextlib's
    """Within the block the first Ctrl-C raises KeyboardInterrupt as usual; once ``stopping``
    is set (by that first one, or by the caller when it starts finishing) further Ctrl-Cs are
    logged and ignored, so the code that writes the outputs runs to its end.  Only where
    Python's default SIGINT handler is in place, in the main thread."""

    def __enter__(self):
        self.stopping = False
        self._holding = False
        self._pending = False
        self._previous = None
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame):
        if self.stopping:
            log.warning("edgepose: still writing the outputs; they will be complete in a moment")
            return
        if self._holding:
            self._pending = True
            return
        self.stopping = True
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def hold(self):
        """A step that must not be cut in two (one frame into the video and its counters):
        a Ctrl-C meanwhile is raised when the step is complete."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending and not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# ---------------------------------------------------------------------------- a set of files
def _link_or_copy(src: Path, dst: Path):
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_file)
    else:
        _link_file(src, dst)


def _link_file(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@contextlib.contextmanager
def staged_dir(final_dir, option: str = "--out"):
    """Yield a hidden sibling folder holding (hard links to) what ``final_dir`` holds; the
    caller writes its set there (every write must replace files, as atomic_path does) and on
    success the folder is swapped into place.  On any failure or Ctrl-C the stage is removed
    and ``final_dir`` is as it was (or absent when it did not exist)."""
    final = Path(os.path.realpath(final_dir))  # a symlinked folder: stage and swap beside its target
    if Path.cwd() == final or final in Path.cwd().parents:
        raise UsageError(f"{option} {final_dir}: give the set a folder of its own (e.g. {option} build/), "
                         "not the current folder or one above it; it is replaced as a whole")
    check_writable(final, option, is_dir=True)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
        os.chmod(stage, _folder_mode(final))  # mkdtemp makes 0700; keep the folder's or the umask's
    except OSError as exc:
        raise output_error(exc, final) from None
    try:
        try:
            if final.is_dir():
                for entry in final.iterdir():
                    _link_or_copy(entry, stage / entry.name)
            yield stage
        except OSError as exc:
            raise output_error(exc, final) from None
        except OutputError as exc:  # name the user's folder, not the hidden stage
            raise OutputError(str(exc).replace(str(stage), str(final))) from None
        with deferred_sigint():
            _swap_into_place(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _folder_mode(final: Path) -> int:
    if final.is_dir():
        return final.stat().st_mode & 0o7777
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def _swap_into_place(stage: Path, final: Path):
    if not final.exists():
        try:
            os.rename(stage, final)
        except OSError as exc:
            raise output_error(exc, final) from None
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
    os.rmdir(aside)
    try:
        os.rename(final, aside)
    except OSError as exc:
        raise output_error(exc, final) from None
    try:
        os.rename(stage, final)
    except OSError as exc:
        os.rename(aside, final)
        raise output_error(exc, final) from None
    shutil.rmtree(aside, ignore_errors=True)
