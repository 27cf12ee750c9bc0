"""Small file helpers: atomic writes, hashing."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final_path):
    """Yield a temporary path beside ``final_path``; rename it into place on success.

    On any exception the temporary file is removed and ``final_path`` is left untouched,
    so a failed build never leaves a half-written ONNX or engine behind.  A write error (full
    disk, read-only folder) becomes an OutputError that names ``final_path`` and the cause.
    """
    final_path = Path(final_path)
    tmp = _reserve_temp(final_path)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; keep the user's umask
        os.replace(tmp, final_path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_write_error(exc, tmp, final_path):
            from edgepose.outputs import output_error

            raise output_error(exc, final_path) from None
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reserve_temp(final_path: Path) -> str:
    """Create the hidden temp file beside ``final_path``; a folder that cannot be written is an
    OutputError naming ``final_path`` and the cause."""
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".tmp", dir=final_path.parent)
    except OSError as exc:
        from edgepose.outputs import output_error

        raise output_error(exc, final_path) from None
    os.close(fd)
    return tmp


def _is_write_error(exc, tmp, final_path) -> bool:
    """An OSError from writing ``tmp`` or renaming it (not, say, reading an input)."""
    from edgepose.outputs import WRITE_ERRNOS

    if not isinstance(exc, OSError) or exc.errno not in WRITE_ERRNOS:
        return False
    return exc.filename in (None, tmp, str(tmp), str(final_path)) or exc.filename == final_path


def atomic_torch_save(obj, path):
    """``torch.save`` into ``path`` whole or not at all.  It serialises to memory first: torch's
    own writer reports a full disk as an opaque RuntimeError, a plain write as an OSError that
    :func:`atomic_path` turns into a one-line OutputError."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buffer.getbuffer())
    return Path(path)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
