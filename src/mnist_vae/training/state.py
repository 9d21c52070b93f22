"""What a checkpoint must hold for exact resume (which config changes a resume may make: :data:`~mnist_vae.config.RESUMABLE`).

Reproducibility contract: with the same seed, data and machine, a run interrupted at any point
and resumed ends with bitwise the same weights as an uninterrupted run. Everything random is
drawn from two streams whose states live in every checkpoint: ``data_rng`` (the epoch's shuffle
and dynamic binarisation, both drawn at the start of the epoch) and torch's global RNG (plus the
device's, on CUDA/MPS: reparameterisation noise and dropout). Evaluation draws from its own
generator seeded by (seed, epoch), so measuring never shifts training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

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
