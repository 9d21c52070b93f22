"""Tiny trained runs for the explorer's tests (1 epoch on a few hundred embedded digits)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mnist_vae.data import Dataset, load_dataset
from mnist_vae.presets import get_config
from mnist_vae.train import train


def small_dataset(n_train: int = 500, n_test: int = 200) -> Dataset:
    """A slice of the embedded digits; strided because the embedded set is sorted by class."""
    ds = load_dataset("embedded", log=lambda m: None)
    tr = slice(None, None, len(ds.train_labels) // n_train)
    te = slice(None, None, len(ds.test_labels) // n_test)
    return dataclasses.replace(ds, train_images=ds.train_images[tr][:n_train], train_labels=ds.train_labels[tr][:n_train],
                               test_images=ds.test_images[te][:n_test], test_labels=ds.test_labels[te][:n_test])


def make_run(out: Path, ds: Dataset, latent_dim: int = 16) -> dict:
    """Train ``optimized`` for one epoch into ``out``; returns the metrics."""
    cfg = get_config("optimized").override(["epochs=1", "n_samples=16", "threads=1", "dataset=\"embedded\"", f"latent_dim={latent_dim}"])
    return train(cfg, out, progress=False, figures=False, log=lambda m: None, dataset=ds)
