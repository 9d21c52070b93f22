"""Crash-safe file writing and the safetensors reader: the bottom layer, imported by everything that writes."""

from .atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    remove_stale_temps,
    sha256_file,
    write_failure,
)
from .safetensors import read_safetensors

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "read_safetensors",
    "remove_stale_temps",
    "sha256_file",
    "write_failure",
]
