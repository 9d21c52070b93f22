"""Opening a finished (or interrupted) run folder: config, model, history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import latest_checkpoint, load_model_weights
from .config import RunConfig
from .errors import CheckpointError
from .models import VAE
from .train import read_run_config


@dataclass
class Run:
    """A run folder's config, its newest good model (eval mode) and its recorded progress."""

    path: Path
    config: RunConfig
    model: VAE
    epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def open_run(run_dir: str | Path, device: str | torch.device = "cpu", warn: Callable[[str], None] = print) -> Run:
    """Load ``run_dir``'s newest good checkpoint; :class:`CheckpointError` if there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    config = read_run_config(run_dir)
    ckpt = latest_checkpoint(run_dir, warn=warn)
    if ckpt is None:
        raise CheckpointError(f"{run_dir}: no usable checkpoint in {run_dir / 'checkpoints'}")
    if ckpt.config.model != config.model:
        raise CheckpointError(f"{ckpt.path}: checkpoint architecture differs from {run_dir / 'config.toml'}")
    model = VAE(config.model)
    load_model_weights(model, ckpt.weights, ckpt.path / "model.safetensors")
    model.to(device).eval()
    state = ckpt.trainer.get("state", {})
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        meta = {}
    return Run(run_dir, config, model, int(state.get("epoch", 0)), list(state.get("history", [])), dict(state.get("snapshots", {})), meta)
