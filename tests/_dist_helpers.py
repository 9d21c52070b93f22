"""Shared bits of the device / distributed / tools tests: a tiny data file and tiny configs."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


#: train() keyword arguments for tests that only need the run folder: no bar, figures or log.
QUIET = dict(progress=False, figures=False)


def tiny_run_config(data: Path, epochs: int = 2, batch_size: int = 100, **changes: object):
    """``optimized``, one thread, trained on the npz file ``data``."""
    from helpers import tiny_config

    return tiny_config(epochs, "optimized", batch_size=batch_size, data_path=str(data), **changes)


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
