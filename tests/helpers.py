"""Test helpers shared by every test module: small slices of the embedded digits, tiny configs, captured log lines."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnist_vae.config import RunConfig
from mnist_vae.data import Dataset, load_embedded
from mnist_vae.presets import get_config
from mnist_vae.runtime.logging import LOGGER, _PlainFormatter


def small_dataset(n_train: int = 400, n_test: int = 100, pick: str = "random") -> Dataset:
    """A slice of the embedded digits (every class present), as an in-memory Dataset.

    ``pick="random"``: a seeded random subset (the digits of :func:`write_npz`'s default file);
    ``"strided"``: evenly spaced images of the class-sorted splits; ``"strided-embedded"``: the same,
    but keeping the embedded set's name and checksum (runs that reopen "embedded" by name).
    """
    full = load_embedded()
    if pick == "random":
        rng = np.random.default_rng(0)
        tr = torch.from_numpy(rng.permutation(len(full.train_labels))[:n_train])
        te = torch.from_numpy(rng.permutation(len(full.test_labels))[:n_test])
        name, sha = "small", f"small-{n_train}-{n_test}-{full.sha256}"
    else:
        tr = torch.linspace(0, len(full.train_labels) - 1, n_train).long()
        te = torch.linspace(0, len(full.test_labels) - 1, n_test).long()
        name, sha = (
            ("embedded", full.sha256) if pick == "strided-embedded" else ("embedded-slice", f"slice-{n_train}-{n_test}-{full.sha256}")
        )
    return dataclasses.replace(
        full,
        name=name,
        sha256=sha,
        train_images=full.train_images[tr],
        train_labels=full.train_labels[tr],
        test_images=full.test_images[te],
        test_labels=full.test_labels[te],
    )


def write_npz(path: Path, ds: Dataset | None = None, n_train: int = 400, n_test: int = 100) -> Path:
    """A Keras-style mnist.npz of ``ds`` (default: the random slice of that size), for driving the CLI with --data-path."""
    ds = ds or small_dataset(n_train, n_test)
    np.savez(
        path,
        x_train=ds.train_images.numpy(),
        y_train=ds.train_labels.numpy().astype(np.uint8),
        x_test=ds.test_images.numpy(),
        y_test=ds.test_labels.numpy().astype(np.uint8),
    )
    return path


def tiny_config(epochs: int = 2, config: str = "dropout", **changes: Any) -> RunConfig:
    """A named config shrunk for tests: one thread on the CPU, ``epochs`` epochs, any other fields changed by name."""
    return get_config(config).replace(epochs=epochs, threads=1, **{"device": "cpu", **changes})


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(_PlainFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_log() -> Iterator[list[str]]:
    """The package's log lines inside the block, as the CLI prints them ("warning: ..." for warnings)."""
    log = logging.getLogger(LOGGER)
    handler, level = _Lines(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
