"""glibc's allocator tuned for the training loop: per-step buffers stay in the heap instead of being mapped afresh.

Speed only: the allocator never changes a number. Where glibc is absent (another OS, musl) every
function here is a no-op that says so by its return value.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # from glibc's malloc.h
_GLIBC_DEFAULT_MMAP_MAX = 65536


def _glibc() -> Any:
    """glibc through ctypes, or None (not Linux, or another C library such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tune_malloc() -> bool:
    """Keep glibc from returning per-step buffers to the OS (a no-op elsewhere); True if applied.

    glibc serves allocations above a dynamic threshold with mmap and unmaps them on free, so a
    training step that allocates and frees the same large buffers page-faults them in again every
    step. A fixed 32 MiB mmap threshold and a 128 MiB trim threshold avoid that (measured effect:
    docs/performance.md).
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 128 << 20))


@contextmanager
def heap_only_malloc() -> Iterator[bool]:
    """Serve every allocation from glibc's heap inside the block (a no-op elsewhere); yields True if applied.

    Buffers above 32 MiB (the largest mmap threshold glibc accepts) are otherwise mapped afresh
    on every step, which costs `original` (a 79 MB weight gradient) thousands of page faults per
    step. Limited to the training loop: an evaluation in a heap-only process once peaked at
    several times its usual memory.
    """
    libc = _glibc()
    applied = libc is not None and bool(libc.mallopt(_M_MMAP_MAX, 0))
    try:
        yield applied
    finally:
        if applied:
            libc.mallopt(_M_MMAP_MAX, _GLIBC_DEFAULT_MMAP_MAX)
