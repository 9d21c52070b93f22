"""Crash-safe writing: build in a temporary beside the target, flush, fsync, rename.

One implementation for files (:func:`atomic_path`, and :func:`atomic_write_bytes` on top of it)
and one for folders (:func:`atomic_dir`). A reader therefore sees the old version or the new one,
never half of either; every OSError becomes a one-line :class:`WriteError` naming the target.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import WriteError

# Names our temporaries get: ".<name>.<8 random chars><suffix>" for files (suffix .tmp, .png,
# .part, ...), ".tmp-<random>" for folders.
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|png|part|onnx|safetensors)$")
TEMP_DIR_PREFIX = ".tmp-"


def write_failure(path: str | Path, exc: OSError) -> WriteError:
    """A one-line :class:`WriteError` for an OSError raised while writing ``path``."""
    reason = exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno else "") or str(exc) or type(exc).__name__
    return WriteError(f"cannot write {path}: {reason}")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporaries a killed process left in ``folder`` (only names our writers create)."""
    removed = []
    for p in Path(folder).iterdir() if Path(folder).is_dir() else ():
        if p.is_file() and _TEMP_NAME.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
        elif p.is_dir() and p.name.startswith(TEMP_DIR_PREFIX):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename in it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask() -> int:
    """The process's current umask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that want a file name (matplotlib's savefig, safetensors, a download). On any
    error the temporary is removed and ``path`` is left as it was; an OSError from the writer or
    the rename becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise write_failure(path, exc) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; give what a plain open() would
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(path: str | Path, replace: bool = False, prefix: str = TEMP_DIR_PREFIX) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``path``; on success it is fsynced and renamed to ``path``.

    Files written into it should be complete (flushed) when the block ends. An existing ``path``
    is replaced only with ``replace=True`` (else the rename fails, naming it). On any error the
    temporary folder is removed; an OSError becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        fsync_dir(tmp)
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_failure(path, exc) from None
        raise
