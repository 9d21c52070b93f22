"""Shared fixtures: a small slice of the embedded digits, one thread, an isolated cache (helpers: tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from mnist_vae.data import Dataset

from helpers import small_dataset


@pytest.fixture(scope="session")
def small_data() -> Dataset:
    return small_dataset(pick="strided")


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
