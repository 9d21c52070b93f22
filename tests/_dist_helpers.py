"""Shared bits of the device / distributed / tools tests: a tiny data file and tiny configs."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import numpy as np

SRC = str(Path(__file__).resolve().parents[1] / "src")


#: train() keyword arguments for tests that only need the run folder: no bar, figures or log.
QUIET = dict(progress=False, figures=False, log=lambda _m: None)


def write_tiny_npz(path: Path, n_train: int = 400, n_test: int = 100) -> Path:
    """A Keras-style mnist.npz of digits drawn (seeded) from the embedded set."""
    from mnist_vae.data import load_embedded

    ds = load_embedded()
    rng = np.random.default_rng(0)
    tr = rng.permutation(len(ds.train_images))[:n_train]
    te = rng.permutation(len(ds.test_images))[:n_test]
    np.savez(path, x_train=ds.train_images.numpy()[tr], y_train=ds.train_labels.numpy()[tr],
             x_test=ds.test_images.numpy()[te], y_test=ds.test_labels.numpy()[te])
    return path


def tiny_config(data: Path, epochs: int = 2, batch_size: int = 100, *extra: str):
    from mnist_vae.presets import get_config

    return get_config("optimized").override(
        [f"epochs={epochs}", "n_samples=16", "threads=1", f"batch_size={batch_size}", f'data_path="{data}"', *extra])


def child_env() -> dict[str, str]:
    """Environment for subprocesses: this checkout's sources first, one thread each."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
