"""Benchmark: the product's training and evaluation speed against a plain reference loop, in one run.

    python -m mnist_vae.bench                      # all seven configurations, table + bench.json
    python -m mnist_vae.bench --configs optimized --epochs 3 --no-full-train

Every figure is measured in the same invocation, after warm-up, as the median of repeats. Each
configuration runs in its own subprocess so that its peak resident memory is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .config import RunConfig
from .data import Dataset, load_dataset, to_unit_float
from .evaluation.likelihood import importance_nll
from .losses import elbo
from .models import VAE, count_parameters
from .models.flops import forward_flops, train_flops
from .presets import get_config, list_configs
from .runtime.device import autocast_for
from .runtime.process import peak_rss_mb
from .training import train


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

    def __init__(self, cfg: RunConfig, train_x: torch.Tensor, fused_adam: bool = True) -> None:
        torch.manual_seed(cfg.train.seed)
        self.model = VAE(cfg.model)
        # The same model-level speed options as the product, so the ratio measures the loop alone.
        self.model.decoder.channels_last = cfg.train.channels_last
        self.autocast = autocast_for(cfg.train.precision, torch.device("cpu"))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, fused=fused_adam)
        self.b, self.x = cfg.train.batch_size, train_x

    def epoch(self, max_steps: int | None = None) -> float:
        """Train one epoch (or its first ``max_steps`` batches); returns images/second."""
        n, b = len(self.x), self.b
        if max_steps is not None:
            n = min(n, max_steps * b)
        t = time.perf_counter()
        perm = torch.randperm(len(self.x))[:n]
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
        return n / (time.perf_counter() - t)


def interleaved_epochs(cfg: RunConfig, ds: Dataset, epochs: int) -> tuple[list[float], list[float], float]:
    """Alternate one reference epoch with one epoch of the product's own ``train()``.

    Alternating makes drifts in machine load hit both loops alike. The product runs as users run
    it (progress bar on, to a null stream; evaluation and a checkpoint after every epoch, resumed
    for the next round); its images/second is its own per-epoch figure, which times the training
    loop only. Returns (reference img/s, product img/s, product whole-epoch seconds).
    """
    ref = ReferenceLoop(cfg, to_unit_float(ds.train_images))
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


def bench_one(name: str, epochs: int, threads: int, nll_k: int, nll_images: int, precision: str) -> dict[str, Any]:
    """All per-configuration figures, measured in this process."""
    cfg = get_config(name).replace(threads=threads, precision=precision, dataset="embedded")
    torch.set_num_threads(threads)
    ds = load_dataset("embedded")
    test_x = to_unit_float(ds.test_images)
    model = VAE(cfg.model)
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

    autocast = autocast_for(precision, torch.device("cpu"))
    times = []
    for i in range(4):
        t = time.perf_counter()
        elbo(model, test_x, generator=torch.Generator().manual_seed(i), autocast=autocast)
        times.append(time.perf_counter() - t)
    row["eval_img_s"] = len(test_x) / statistics.median(times[1:])

    for nll_precision in ("fp32", "bf16"):
        row[f"nll_passes_s_{nll_precision}"] = nll_rate(model, test_x[:nll_images], nll_k, nll_precision)
    row["peak_rss_mb"] = peak_rss_mb()
    return row


def nll_rate(model: VAE, x: torch.Tensor, k: int, precision: str) -> float:
    """Decoder passes (latent codes decoded) per second of the importance-weighted NLL estimator."""
    importance_nll(model, x[:2], k=min(k, 256), seed=0, precision=precision)  # warm-up
    times = []
    for i in range(3):
        t = time.perf_counter()
        importance_nll(model, x, k=k, seed=i, precision=precision)
        times.append(time.perf_counter() - t)
    return len(x) * k / statistics.median(times)


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


#: Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (beyond: the normal 1.96).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


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
        d = [a - b for a, b in zip(x, base)]
        n = len(d)
        sd_d = statistics.stdev(d) if n > 1 else float("nan")
        half = (T_975[n - 2] if n - 1 <= len(T_975) else 1.96) * sd_d / n**0.5 if n > 1 else float("nan")
        lo, hi = statistics.mean(d) - half, statistics.mean(d) + half
        verdict = "within" if -bound < lo and hi < bound else "exceeds" if lo >= bound or hi <= -bound else "inconclusive"
        out[v] = {
            "mean": statistics.mean(x),
            "sd": statistics.stdev(x) if n > 1 else float("nan"),
            "shift_vs_fp32": statistics.mean(d),
            "paired_sd": sd_d,
            "ci95": [lo, hi],
            "verdict": verdict if v != "fp32" else "reference",
        }
    return out


def _table(rows: list[dict[str, Any]], peak_gflops: float) -> str:
    head = (
        "| config | params | train MFLOP/img | reference img/s | train img/s | overhead | GFLOP/s (% of matmul) "
        "| eval img/s | NLL decoder passes/s fp32 / bf16 | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        nll = f"{r['nll_passes_s_fp32']:,.0f} / {r['nll_passes_s_bf16']:,.0f}"
        lines.append(
            f"| {r['config']} | {r['parameters']:,} | {r['train_mflop']:.1f} | {r['reference_img_s']:,.0f} | {r['train_img_s']:,.0f} "
            f"| {100 * r['overhead']:+.1f}% | {r['train_gflop_s']:.1f} ({100 * r['train_gflop_s'] / peak_gflops:.0f}%) "
            f"| {r['eval_img_s']:,.0f} | {nll} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mnist_vae.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(list_configs()), help="comma-separated configurations (default: all seven)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per loop; the first is warm-up, the median of the rest is reported")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="autocast precision of the product loop")
    p.add_argument("--nll-k", type=int, default=1000, help="importance samples per image for the NLL rate")
    p.add_argument("--nll-images", type=int, default=20, help="test images for the NLL rate")
    p.add_argument("--no-full-train", action="store_true", help="skip the 50-epoch `mnist-vae train --config optimized` wall time")
    p.add_argument("--out", default="bench.json", help="where to write the figures (default: bench.json)")
    p.add_argument("--options", default="optimized,baseline", help="configurations for the speed-option comparison ('' to skip)")
    p.add_argument("--precision-epochs", type=int, default=10, help="epochs for the option ELBO check on optimized (0 to skip)")
    p.add_argument("--precision-seeds", type=int, default=3, help="seeds per option in the ELBO check")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: benchmark one config in this process, print JSON
    return p


def _configs_in_subprocesses(args: argparse.Namespace) -> list[dict[str, Any]]:
    """bench_one for each configuration, each in a fresh process (so its peak memory is its own)."""
    rows = []
    for name in args.configs.split(","):
        get_config(name)  # fail fast on a bad name
        cmd = [sys.executable, "-m", "mnist_vae.bench", "--one", name, "--epochs", str(args.epochs), "--threads", str(args.threads)]
        cmd += ["--nll-k", str(args.nll_k), "--nll-images", str(args.nll_images), "--precision", args.precision]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"  {name}: train {r['train_img_s']:,.0f} img/s (reference {r['reference_img_s']:,.0f}, overhead {100 * r['overhead']:+.1f}%)",
            flush=True,
        )
    return rows


def _print_extras(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The option table, the ELBO check, the NLL projection and the 50-epoch wall time."""
    if "options" in result:
        variants = list(OPTION_VARIANTS)
        print("\nspeed options, reference loop images/second (median of 5 interleaved rounds of 20 steps):\n")
        print("| config | " + " | ".join(variants) + " |")
        print("|---|" + "---|" * len(variants))
        for r in result["options"]:
            print(f"| {r['config']} | " + " | ".join(f"{r[v]:,.0f} ({r[v] / r['fp32']:.2f}x)" for v in variants) + " |")
    if "precision_check" in result:
        pc = result["precision_check"]
        print(
            f"\ntest negative ELBO (fp32 evaluation) of optimized after {args.precision_epochs} epochs, {args.precision_seeds} seeds per option:"
        )
        for v, sm in pc["summary"].items():
            runs = ", ".join(f"{x:.2f}" for x in pc["test_elbo"][v])
            shift = (
                ""
                if v == "fp32"
                else (
                    f"  paired shift vs fp32 {sm['shift_vs_fp32']:+.2f} nats, 95% CI [{sm['ci95'][0]:+.2f}, "
                    f"{sm['ci95'][1]:+.2f}]: {sm['verdict']} ±0.5"
                )
            )
            print(f"  {v:<16} mean {sm['mean']:8.2f}  sd {sm['sd']:5.2f}  ({runs}){shift}")
    for r in result["configs"]:
        if r["config"] == "optimized":
            full = 5000 * 2000
            print(
                f"\nimportance-weighted NLL of optimized, K=5000 on 2,000 test images, projected from the rates above: "
                f"{full / r['nll_passes_s_fp32'] / 60:.1f} min in fp32, {full / r['nll_passes_s_bf16'] / 60:.1f} min in bf16"
            )
    if "optimized_50_epochs_wall_s" in result:
        print(f"\n`mnist-vae train --config optimized` (50 epochs, embedded digits): {result['optimized_50_epochs_wall_s']:.1f} s wall")


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, write bench.json."""
    args = _parser().parse_args(argv)
    if args.one:
        print(json.dumps(bench_one(args.one, args.epochs, args.threads, args.nll_k, args.nll_images, args.precision)))
        return 0
    peak = matmul_gflops(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads; fp32 matmul {peak:.1f} GFLOP/s"
    )
    machine = {
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": args.threads,
        "matmul_gflop_s": peak,
    }
    result: dict[str, Any] = {"machine": machine, "settings": vars(args), "configs": _configs_in_subprocesses(args)}
    if args.options:
        result["options"] = option_rates(args.options.split(","), args.threads)
    if args.precision_epochs:
        losses = precision_check("optimized", args.precision_epochs, args.threads, args.precision_seeds)
        result["precision_check"] = {
            "config": "optimized",
            "epochs": args.precision_epochs,
            "test_elbo": losses,
            "summary": summarize_precision(losses),
        }
    if not args.no_full_train:
        result["optimized_50_epochs_wall_s"] = full_train_wall(args.threads)
    print()
    print(_table(result["configs"], peak))
    _print_extras(result, args)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
