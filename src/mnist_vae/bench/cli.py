"""The benchmark's command line: measure, print the tables, write bench.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ..presets import get_config, list_configs
from ..runtime.device import resolve_device
from .checks import OPTION_VARIANTS, full_train_wall, option_rates, precision_check, summarize_precision
from .loops import bench_one, matmul_gflops


def _table(rows: list[dict[str, Any]], peak_gflops: float) -> str:
    head = (
        "| config | params | train MFLOP/img | reference img/s | train img/s | overhead | GFLOP/s (% of matmul) "
        "| eval img/s | NLL decoder passes/s fp32 / bf16 | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        bf16 = r.get("nll_passes_s_bf16")
        nll = f"{r['nll_passes_s_fp32']:,.0f} / {'n/a (not native)' if bf16 is None else f'{bf16:,.0f}'}"
        lines.append(
            f"| {r['config']} | {r['parameters']:,} | {r['train_mflop']:.1f} | {r['reference_img_s']:,.0f} | {r['train_img_s']:,.0f} "
            f"| {100 * r['overhead']:+.1f}% | {r['train_gflop_s']:.1f} ({100 * r['train_gflop_s'] / peak_gflops:.0f}%) "
            f"| {r['eval_img_s']:,.0f} | {nll} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mnist_vae.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default=",".join(list_configs()), help="comma-separated configurations (default: all of them)")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda or auto: where both loops and the NLL run; "
        "the option table, the ELBO check and the 50-epoch wall time are CPU measurements and are skipped elsewhere",
    )
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
        cmd += ["--nll-k", str(args.nll_k), "--nll-images", str(args.nll_images), "--precision", args.precision, "--device", args.device]
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
                f"{full / r['nll_passes_s_fp32'] / 60:.1f} min in fp32"
                + ("" if r.get("nll_passes_s_bf16") is None else f", {full / r['nll_passes_s_bf16'] / 60:.1f} min in bf16")
            )
    if "optimized_50_epochs_wall_s" in result:
        print(f"\n`mnist-vae train --config optimized` (50 epochs, embedded digits): {result['optimized_50_epochs_wall_s']:.1f} s wall")


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, write bench.json."""
    args = _parser().parse_args(argv)
    if args.one:
        print(json.dumps(bench_one(args.one, args.epochs, args.threads, args.nll_k, args.nll_images, args.precision, args.device)))
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
    if resolve_device(args.device).type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    result: dict[str, Any] = {"machine": machine, "settings": vars(args), "configs": _configs_in_subprocesses(args)}
    on_cpu = resolve_device(args.device).type == "cpu"
    if args.options and on_cpu:
        result["options"] = option_rates(args.options.split(","), args.threads)
    if args.precision_epochs and on_cpu:
        losses = precision_check("optimized", args.precision_epochs, args.threads, args.precision_seeds)
        result["precision_check"] = {
            "config": "optimized",
            "epochs": args.precision_epochs,
            "test_elbo": losses,
            "summary": summarize_precision(losses),
        }
    if not args.no_full_train and on_cpu:
        result["optimized_50_epochs_wall_s"] = full_train_wall(args.threads)
    print()
    print(_table(result["configs"], peak))
    _print_extras(result, args)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0
