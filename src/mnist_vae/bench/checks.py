"""CPU checks beside the speed table: speed options, their effect on the test ELBO, the 50-epoch wall time."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset, to_unit_float
from ..presets import get_config
from ..stats import equivalence, interval
from ..training import train
from .loops import ReferenceLoop


def full_train_wall(threads: int) -> float:
    """Wall seconds of `mnist-vae train --config optimized` for 50 epochs on the embedded digits."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mnist_vae",
                "train",
                "--config",
                "optimized",
                "--dataset",
                "embedded",
                "--threads",
                str(threads),
                "--out",
                str(Path(tmp) / "run"),
                "--no-progress",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - t


# Speed options, each as (config changes, fused Adam); the first is the plainest setting.
OPTION_VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "fp32": ({"channels_last": False}, False),
    "+ channels-last": ({"channels_last": True}, False),
    "+ fused Adam (default)": ({"channels_last": True}, True),
    "+ bf16": ({"precision": "bf16", "channels_last": True}, True),
}
# The ELBO check: the default, the same arithmetic in another memory order (the noise floor), bf16.
PRECISION_VARIANTS: dict[str, dict[str, Any]] = {"fp32": {}, "fp32 contiguous": {"channels_last": False}, "bf16": {"precision": "bf16"}}


def option_rates(names: list[str], threads: int, steps: int = 20, rounds: int = 5) -> list[dict[str, Any]]:
    """Reference-loop images/second of each speed option, round-robin over variants, median of rounds."""
    torch.set_num_threads(threads)
    ds = load_dataset("embedded")
    train_x = to_unit_float(ds.train_images)
    out = []
    for name in names:
        loops = {v: ReferenceLoop(get_config(name).replace(**changes), train_x, fused) for v, (changes, fused) in OPTION_VARIANTS.items()}
        for loop in loops.values():
            loop.epoch(max_steps=3)  # warm-up: kernel selection, allocator
        rates: dict[str, list[float]] = {v: [] for v in loops}
        for _ in range(rounds):
            for v, loop in loops.items():
                rates[v].append(loop.epoch(max_steps=steps))
        out.append({"config": name, **{v: statistics.median(r) for v, r in rates.items()}})
    return out


def precision_check(name: str, epochs: int, threads: int, seeds: int = 3) -> dict[str, list[float]]:
    """Test −ELBO (measured in fp32) after ``epochs`` epochs of the product's train(), per option and seed.

    Several seeds, because a single pair of runs mostly measures how far two trajectories drift
    apart from different rounding: fp32 with and without channels-last (the same arithmetic in
    another order) differ by about as much as fp32 and bf16, which gives the noise floor.
    """
    ds = load_dataset("embedded")
    result: dict[str, list[float]] = {v: [] for v in PRECISION_VARIANTS}
    for seed in range(seeds):
        for variant, changes in PRECISION_VARIANTS.items():
            cfg = get_config(name).replace(epochs=epochs, threads=threads, seed=seed, **changes)
            with tempfile.TemporaryDirectory() as tmp:
                m = train(cfg, Path(tmp) / "run", dataset=ds, progress=False, figures=False)
            result[variant].append(m["test_loss"])
    return result


def summarize_precision(losses: dict[str, list[float]], bound: float = 0.5) -> dict[str, dict[str, Any]]:
    """Per option: mean and seed-to-seed sd, and the shift from fp32 as a paired comparison.

    Runs with the same seed share the initial weights, the data order and the noise, so the
    per-seed difference d_i = option_i − fp32_i removes most of the seed-to-seed spread. The shift
    is mean(d) with a 95% t-interval; ``verdict`` says whether the interval lies inside ±bound
    ("within"), outside it ("exceeds"), or straddles it ("inconclusive").
    """
    base = losses["fp32"]
    out: dict[str, dict[str, Any]] = {}
    for v, x in losses.items():
        d = interval([a - b for a, b in zip(x, base)])
        out[v] = {
            "mean": statistics.mean(x),
            "sd": statistics.stdev(x) if len(x) > 1 else float("nan"),
            "shift_vs_fp32": d.mean,
            "paired_sd": d.sd,
            "ci95": [d.lo, d.hi],
            "verdict": equivalence(d, bound) if v != "fp32" else "reference",
        }
    return out
