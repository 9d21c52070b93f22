"""The measuring loops: the plain reference loop, the product's own epochs, the NLL rate, the matmul rate."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..data import Dataset, load_dataset, to_unit_float
from ..evaluation.likelihood import importance_nll
from ..losses import elbo
from ..models import VAE, build_model, count_parameters
from ..models.flops import forward_flops, train_flops
from ..presets import get_config
from ..runtime.device import autocast_for, native_bf16, resolve_device
from ..runtime.process import peak_rss_mb
from ..training import train


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """The machine's fp32 matrix-multiply rate (GFLOP/s): median over repeats of an n×n product."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


class ReferenceLoop:
    """The plainest correct training loop for the same model.

    Data preloaded as one tensor, a fresh permutation per epoch, no logging, no progress bar,
    no checkpoints, no evaluation.
    """

    def __init__(self, cfg: RunConfig, train_x: torch.Tensor, fused_adam: bool = True, device: str = "cpu") -> None:
        torch.manual_seed(cfg.train.seed)
        self.device = torch.device(device)
        # The same model-level speed options as the product, so the ratio measures the loop alone.
        self.model = build_model(cfg, self.device)
        self.autocast = autocast_for(cfg.train.precision, self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, fused=fused_adam)
        self.b, self.x = cfg.train.batch_size, train_x.to(self.device)

    def epoch(self, max_steps: int | None = None) -> float:
        """Train one epoch (or its first ``max_steps`` batches); returns images/second."""
        n, b = len(self.x), self.b
        if max_steps is not None:
            n = min(n, max_steps * b)
        t = time.perf_counter()
        perm = torch.randperm(len(self.x))[:n].to(self.device)
        for i in range(0, n, b):
            x = self.x[perm[i : i + b]]
            with self.autocast or contextlib.nullcontext():
                logits, mu, logvar = self.model(x)
            logits, mu, logvar = logits.float(), mu.float(), logvar.float()
            recon = F.binary_cross_entropy_with_logits(logits, x.view_as(logits), reduction="sum") / len(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
            self.opt.zero_grad(set_to_none=True)
            (recon + kl).backward()
            self.opt.step()
        _sync(self.device)
        return n / (time.perf_counter() - t)


def _sync(device: torch.device) -> None:
    """Wait for an accelerator's queued work, so that a timing covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_epochs(cfg: RunConfig, ds: Dataset, epochs: int) -> tuple[list[float], list[float], float]:
    """Alternate one reference epoch with one epoch of the product's own ``train()``.

    Alternating makes drifts in machine load hit both loops alike. The product runs as users run
    it (progress bar on, to a null stream; evaluation and a checkpoint after every epoch, resumed
    for the next round); its images/second is its own per-epoch figure, which times the training
    loop only. Returns (reference img/s, product img/s, product whole-epoch seconds).
    """
    ref = ReferenceLoop(cfg, to_unit_float(ds.train_images), device=cfg.train.device)
    ref_rates, walls = [], []
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as null:
        run = Path(tmp) / "run"
        for e in range(1, epochs + 1):
            ref_rates.append(ref.epoch())
            stderr, sys.stderr = sys.stderr, null
            try:
                t0 = time.perf_counter()
                train(cfg.replace(epochs=e), run, resume=e > 1, dataset=ds, progress=True, figures=False)
                walls.append(time.perf_counter() - t0)
            finally:
                sys.stderr = stderr
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return ref_rates, [r["images_per_second"] for r in history], statistics.median(walls[1:] or walls)


def bench_one(name: str, epochs: int, threads: int, nll_k: int, nll_images: int, precision: str, device: str = "cpu") -> dict[str, Any]:
    """All per-configuration figures, measured in this process."""
    dev = resolve_device(device)
    cfg = get_config(name).replace(threads=threads, precision=precision, dataset="embedded", device=str(dev))
    torch.set_num_threads(threads)
    ds = load_dataset("embedded")
    test_x = to_unit_float(ds.test_images).to(dev)
    model = VAE(cfg.model).to(dev)
    fwd = forward_flops(model)
    row: dict[str, Any] = {
        "config": name,
        "parameters": count_parameters(model),
        "forward_mflop": fwd["total"] / 1e6,
        "train_mflop": train_flops(model) / 1e6,
    }

    ref, prod, epoch_wall = interleaved_epochs(cfg, ds, epochs)
    ref_rate, prod_rate = statistics.median(ref[1:] or ref), statistics.median(prod[1:] or prod)
    row.update(reference_img_s=ref_rate, train_img_s=prod_rate, overhead=ref_rate / prod_rate - 1, epoch_wall_s=epoch_wall)
    row["train_gflop_s"] = prod_rate * row["train_mflop"] / 1e3

    autocast = autocast_for(precision, dev)
    times = []
    for i in range(4):
        t = time.perf_counter()
        elbo(model, test_x, generator=torch.Generator(device=dev).manual_seed(i), autocast=autocast)
        times.append(time.perf_counter() - t)
    row["eval_img_s"] = len(test_x) / statistics.median(times[1:])

    chunk = 256 if dev.type == "cpu" else 8192  # small chunks stay in a CPU's cache; a GPU wants large ones
    row["nll_passes_s_bf16"] = None  # emulated bf16 is slow and never chosen by `auto`: not worth measuring
    for nll_precision in ("fp32", "bf16") if native_bf16(dev) else ("fp32",):
        row[f"nll_passes_s_{nll_precision}"] = nll_rate(model, test_x[:nll_images], nll_k, nll_precision, chunk)
    row["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def nll_rate(model: VAE, x: torch.Tensor, k: int, precision: str, chunk: int = 256) -> float:
    """Decoder passes (latent codes decoded) per second of the importance-weighted NLL estimator."""
    importance_nll(model, x[:2], k=min(k, 256), chunk=chunk, seed=0, precision=precision)  # warm-up
    times = []
    for i in range(3):
        t = time.perf_counter()
        importance_nll(model, x, k=k, chunk=chunk, seed=i, precision=precision)  # ends with .item()s: synchronised
        times.append(time.perf_counter() - t)
    return len(x) * k / statistics.median(times)
