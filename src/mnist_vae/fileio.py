"""Crash-safe file writing: temporary file in the same folder, flush, fsync, rename."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import WriteError

# Names mkstemp gives our temporaries: ".<name>.<8 random chars><suffix>" (suffix .tmp or .png).
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.(tmp|png)$")


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_mode(path: str | Path) -> None:
    """Give a file made by mkstemp (mode 0600) the permissions a plain open() would have."""
    os.chmod(path, 0o666 & ~_umask())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Any OSError (disk full, read-only folder) becomes a :class:`WriteError` naming ``path``; the
    old ``path``, if any, is left as it was and no temporary remains.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_failure(path, exc) from None
    try:
        readable_mode(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_failure(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    For writers that want a file name (matplotlib's savefig, torch.save, safetensors). An OSError
    from the writer or the rename becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise write_failure(path, exc) from None
    os.close(fd)
    try:
        readable_mode(tmp)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
