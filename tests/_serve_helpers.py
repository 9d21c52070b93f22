"""Tiny trained runs for the explorer's tests (1 epoch on a few hundred embedded digits), and a live server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from mnist_vae.data import Dataset, prepare_data
from mnist_vae.runs.folder import Run, open_run
from mnist_vae.training import train

from helpers import small_dataset as _slice
from helpers import tiny_config

#: Latent dimensions that :func:`with_active_dims` makes active in the 16-dimensional test run.
ACTIVE_DIMS = (2, 9, 13)


def small_dataset(n_train: int = 500, n_test: int = 200) -> Dataset:
    """Evenly spaced embedded digits that keep the embedded set's name, so the explorer reopens them by name."""
    return _slice(n_train, n_test, pick="strided-embedded")


def make_run(out: Path, ds: Dataset, latent_dim: int = 16) -> dict:
    """Train ``optimized`` for one epoch into ``out``; returns the metrics."""
    return train(tiny_config(1, "optimized", dataset="embedded", latent_dim=latent_dim), out, progress=False, figures=False, dataset=ds)


_RUNS: dict[tuple[int, str], Path] = {}


def shared_run(tmp_path_factory, ds: Dataset, latent_dim: int = 16) -> Path:
    """A run trained once per test session and latent size (by :func:`make_run`); copy it before changing it."""
    key = (latent_dim, ds.sha256)
    if key not in _RUNS:
        out = tmp_path_factory.mktemp("serve-run") / f"run{latent_dim}"
        make_run(out, ds, latent_dim=latent_dim)
        _RUNS[key] = out
    return _RUNS[key]


def with_active_dims(run_dir: Path, ds: Dataset, dims: tuple[int, ...] = ACTIVE_DIMS) -> Run:
    """The run, opened, with the encoder's mean rescaled so that exactly ``dims`` are active on ``ds``'s test digits.

    One epoch on a few hundred digits leaves every dimension collapsed (Var of μ_d ~ 1e-5); here
    μ_d ← (μ_d − mean) / std for the chosen d, so those have variance 1 over the test digits and
    the others stay far below the 0.01 of the active-unit rule. Nothing is written to the run.
    """
    run = open_run(run_dir)
    test_x = prepare_data(run.config, torch.device("cpu"), dataset=ds).test_x
    layer = run.model.encoder.mu
    with torch.no_grad():
        mu = run.model.encode(test_x)[0]
        for d in dims:
            scale = 1.0 / float(mu[:, d].std())
            layer.weight[d] *= scale
            layer.bias[d] = (layer.bias[d] - mu[:, d].mean()) * scale
    return run


class Served:
    """uvicorn serving an app on a free port of 127.0.0.1 in a background thread."""

    def __init__(self, app) -> None:
        from mnist_vae.serve.app import listen_socket, make_server

        sock = listen_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
