"""Shared fixtures: a small slice of the embedded digits and a tiny config, so tests train in seconds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mnist_vae.data import Dataset, load_embedded


def small_dataset(n_train: int = 400, n_test: int = 100) -> Dataset:
    """Every k-th image of the embedded splits (all classes present), as a Dataset."""
    full = load_embedded()
    tr = torch.linspace(0, len(full.train_labels) - 1, n_train).long()
    te = torch.linspace(0, len(full.test_labels) - 1, n_test).long()
    return dataclasses.replace(
        full, name="embedded-slice", train_images=full.train_images[tr], train_labels=full.train_labels[tr],
        test_images=full.test_images[te], test_labels=full.test_labels[te], sha256=f"slice-{n_train}-{n_test}-{full.sha256}",
    )


def write_npz(path, ds: Dataset) -> None:
    """The dataset as a Keras-style mnist.npz, for driving the CLI with --data-path."""
    np.savez(path, x_train=ds.train_images.numpy(), y_train=ds.train_labels.numpy().astype(np.uint8),
             x_test=ds.test_images.numpy(), y_test=ds.test_labels.numpy().astype(np.uint8))


@pytest.fixture(scope="session")
def small_data() -> Dataset:
    return small_dataset()


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models run fastest on one thread, and several processes (tests, subprocesses) share
    # the cores; training may change the count, so it is restored after every test.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # No test may touch the user's cache or the network through the dataset's auto mode.
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path_factory.mktemp("cache")))
