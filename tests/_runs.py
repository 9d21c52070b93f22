"""Test helpers: a tiny training setup, the CLI as a subprocess, and run-folder checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import mnist_vae
from mnist_vae.runs.checkpoint import list_checkpoints, verify_checkpoint

SRC = Path(mnist_vae.__file__).resolve().parents[1]
FAULTRUN = Path(__file__).with_name("_faultrun.py")
N_TRAIN, N_TEST, BATCH, EPOCHS = 400, 100, 100, 3
STEPS_PER_EPOCH = N_TRAIN // BATCH
FIGURES = ("reconstructions.png", "loss_curves.png", "samples.png", "samples_over_training.png", "interpolation.png")


def train_args(npz: Path, out: Path, binarize: str = "none", config: str = "dropout") -> list[str]:
    """CLI arguments for the tiny run: dropout masks, reparameterisation noise and shuffling all matter."""
    return [
        "train",
        "--config",
        config,
        "--data-path",
        str(npz),
        "--epochs",
        str(EPOCHS),
        "--threads",
        "1",
        "--device",
        "cpu",
        "--binarize",
        binarize,
        "--set",
        f"eval_batch_size={N_TEST}",
        "--out",
        str(out),
        "--no-progress",
    ]


def run_cli(args: list[str], fault: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m mnist_vae ARGS`` (through tests/_faultrun.py when a fault is given)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop("MNIST_VAE_TEST_FAULT", None)
    cmd = [sys.executable, "-m", "mnist_vae", *args]
    if fault:
        env["MNIST_VAE_TEST_FAULT"] = fault
        cmd = [sys.executable, str(FAULTRUN), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def run_in_process(args: list[str]) -> subprocess.CompletedProcess:
    """``mnist_vae.cli.main(ARGS)`` in this process (faster than a subprocess); torch's thread count is restored."""
    import contextlib
    import io

    from mnist_vae.cli import main

    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def good_checkpoints(run: Path) -> list[Path]:
    """Checkpoint folders whose files match their manifest, oldest first."""
    return [p for p in list_checkpoints(run) if verify_checkpoint(p) is None]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    """Weights of the newest good checkpoint."""
    return load_file(str(good_checkpoints(run)[-1] / "model.safetensors"))


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str = "weights") -> None:
    assert sorted(a) == sorted(b), f"{what}: different tensor names"
    differ = [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]
    assert not differ, f"{what}: {len(differ)} tensors differ, e.g. {differ[:3]}"


def optimizer_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Adam's moments and step counts of the newest good checkpoint, flattened."""
    trainer = torch.load(good_checkpoints(run)[-1] / "trainer.pt", weights_only=True)
    out = {}
    for pid, st in trainer["optimizer"]["state"].items():
        for k, v in st.items():
            out[f"{pid}.{k}"] = v
    return out


def loss_history(run: Path) -> list[tuple]:
    """(epoch, train loss, test loss) per line of metrics.jsonl; every line must be valid JSON."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["epoch"], r["train_loss"], r["train_recon"], r["test_loss"]) for r in map(json.loads, lines)]


def leftovers(run: Path) -> list[str]:
    """Temporary files or folders anywhere in the run (hidden names are ours: .tmp-*, .x.abc.tmp)."""
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*"))
