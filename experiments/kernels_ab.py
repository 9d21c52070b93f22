"""One training step with this round's CPU kernels on and off, paired, in one process.

    python experiments/kernels_ab.py [CONFIG ...] [--rounds 25] [--threads 1]

"on": strided transposed convolutions with the split backward (accel/convt.py) and dropout masks
from uniform draws (models/decoder.py); "off": the stock `F.conv_transpose2d` backward and
`nn.Dropout`. The two alternate step by step on the same model and batch, so machine drift hits
both; prints the median step time of each and the median of the paired ratios off/on with its
quartiles (above 1: the new kernels are faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnist_vae.accel import convt
from mnist_vae.models import VAE, decoder
from mnist_vae.presets import get_config
from mnist_vae.training.step import TrainStep

SPLIT_APPLY, FAST_DROPOUT = convt._SplitBackwardConvT.apply, decoder.Dropout.forward


def _stock(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: Any, padding: Any, output_padding: Any) -> torch.Tensor:
    return F.conv_transpose2d(x, w, b, stride, padding, output_padding)


def _use_new_kernels(on: bool) -> None:
    convt._SplitBackwardConvT.apply = SPLIT_APPLY if on else _stock  # type: ignore[method-assign]
    decoder.Dropout.forward = FAST_DROPOUT if on else nn.Dropout.forward  # type: ignore[method-assign,assignment]


def compare(name: str, rounds: int) -> dict[str, float]:
    """Median step milliseconds with the new kernels on and off, and the paired ratio off/on (the product's own step)."""
    torch.manual_seed(0)
    cfg = get_config(name)
    model = VAE(cfg.model).train()
    model.channels_last = True
    take_step = TrainStep(model, model, cfg.train, torch.device("cpu"), total_steps=1)  # the preset: fp32, fused Adam
    x = torch.rand(100, 28, 28)

    def step() -> float:
        t = time.perf_counter()
        take_step(x, torch.randn(100, cfg.model.latent_dim), 1.0)
        return time.perf_counter() - t

    for on in (True, False, True):  # warm-up of both paths
        _use_new_kernels(on)
        step()
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for on in (True, False):
            _use_new_kernels(on)
            times[on].append(step())
    _use_new_kernels(True)
    ratios = [off / on for on, off in zip(times[True], times[False])]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {"on_ms": 1e3 * statistics.median(times[True]), "off_ms": 1e3 * statistics.median(times[False]),
            "ratio": statistics.median(ratios), "q1": q1, "q3": q3}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", default=["original", "optimized", "dropout"])
    p.add_argument("--rounds", type=int, default=25, help="paired steps (default: 25)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print("| config | step ms, kernels off | step ms, on | off / on, paired median [quartiles] |")
    print("|---|---|---|---|")
    for name in args.configs:
        r = compare(name, args.rounds)
        print(f"| {name} | {r['off_ms']:.1f} | {r['on_ms']:.1f} | {r['ratio']:.3f} [{r['q1']:.3f}, {r['q3']:.3f}] |", flush=True)


if __name__ == "__main__":
    main()
