"""What a checkpoint must hold for exact resume, and which config changes a resume may make.

Reproducibility contract: with the same seed, data and machine, a run interrupted at any point
and resumed ends with bitwise the same weights as an uninterrupted run. Everything random is
drawn from two streams whose states live in every checkpoint: ``data_rng`` (the epoch's shuffle
and dynamic binarisation, both drawn at the start of the epoch) and torch's global RNG (plus the
device's, on CUDA/MPS: reparameterisation noise and dropout). Evaluation draws from its own
generator seeded by (seed, epoch), so measuring never shifts training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..errors import CheckpointError, ConfigError

SNAPSHOT_EVERY = 5  # decode the fixed z after epoch 1, 5, 10, ... and the last


@dataclass
class TrainState:
    """Progress of a run; stored in every checkpoint as a plain dict (``trainer.pt`` loads weights-only)."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps done in the epoch after those
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    snapshots: dict[str, torch.Tensor] = field(default_factory=dict)  # epoch -> fixed z decoded, uint8
    partial: dict[str, float] | None = None  # sums of the unfinished epoch: loss, recon, kl, images, seconds
    seconds: float = 0.0  # training seconds of the finished epochs

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "snapshots": self.snapshots,
            "partial": self.partial,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(int(d["epoch"]), int(d["step"]), list(d["history"]), dict(d["snapshots"]), d["partial"], float(d["seconds"]))


def snapshot_epochs(epochs: int) -> list[int]:
    """Epochs after which the fixed z is decoded: 1, 5, 10, 15, ... and the last."""
    marks = {1, epochs} | set(range(SNAPSHOT_EVERY, epochs + 1, SNAPSHOT_EVERY))
    return sorted(m for m in marks if m <= epochs)


def fixed_training_fields(cfg: RunConfig) -> dict[str, Any]:
    """The training fields a resumed run must keep: all but the length and the machine's thread count."""
    d = cfg.to_dict()["train"]
    d.pop("epochs")
    d.pop("threads")
    return d


def same_run(a: RunConfig, b: RunConfig) -> bool:
    """Whether ``b`` may continue a run started as ``a`` (same model, same training but for length and threads)."""
    return a.model == b.model and fixed_training_fields(a) == fixed_training_fields(b)


def first_difference(a: RunConfig, b: RunConfig) -> str:
    """The first field (other than epochs) that differs, for error messages."""
    da, db = a.to_dict(), b.to_dict()
    for section in ("model", "train"):
        for key, value in da[section].items():
            if key != "epochs" and db[section].get(key) != value:
                return f"{key} is {value!r} in the checkpoint, {db[section].get(key)!r} in the config"
    return "they differ"


def check_resume(run_dir: Path, saved: RunConfig, cfg: RunConfig, checkpoint: Any = None) -> None:
    """Refuse a resume whose config (or newest checkpoint's) is not the run's own."""
    if not same_run(saved, cfg):
        raise ConfigError(
            f"{run_dir}: --resume may only change train.epochs and train.threads; the given config differs from the run's config.toml"
        )
    if checkpoint is not None and not same_run(checkpoint.config, cfg):
        raise CheckpointError(
            f"{checkpoint.path}: written for another configuration than {run_dir / 'config.toml'} "
            f"({first_difference(checkpoint.config, cfg)}); restore the run's config.toml"
        )


def check_world_size(checkpoint: Any, world: int) -> None:
    """A mid-epoch checkpoint resumes only with the process count that wrote it (its batch split)."""
    saved_world = int(checkpoint.trainer.get("world_size", 1))
    if checkpoint.trainer["state"]["step"] and saved_world != world:
        raise ConfigError(
            f"{checkpoint.path}: saved mid-epoch by {saved_world} process(es), this is {world}; "
            f"resume it with {saved_world} (--nproc {saved_world}, or torchrun --nproc_per_node {saved_world})"
        )
