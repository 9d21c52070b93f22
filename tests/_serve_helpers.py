"""Tiny trained runs for the explorer's tests (1 epoch on a few hundred embedded digits)."""

from __future__ import annotations

from pathlib import Path

from mnist_vae.data import Dataset
from mnist_vae.training import train

from helpers import small_dataset as _slice
from helpers import tiny_config


def small_dataset(n_train: int = 500, n_test: int = 200) -> Dataset:
    """Evenly spaced embedded digits that keep the embedded set's name, so the explorer reopens them by name."""
    return _slice(n_train, n_test, pick="strided-embedded")


def make_run(out: Path, ds: Dataset, latent_dim: int = 16) -> dict:
    """Train ``optimized`` for one epoch into ``out``; returns the metrics."""
    return train(tiny_config(1, "optimized", dataset="embedded", latent_dim=latent_dim), out, progress=False, figures=False, dataset=ds)
