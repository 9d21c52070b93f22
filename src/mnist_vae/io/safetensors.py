"""Reading safetensors files with one-line errors (checkpoints and the cached digit classifier)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError


def read_safetensors(path: Path, what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a missing or damaged file is a one-line :class:`CheckpointError`.

    The file is opened once: its header gives the metadata, and the same handle reads every tensor.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        return tensors, metadata
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable {what} ({str(exc).splitlines()[0][:120]})") from None
