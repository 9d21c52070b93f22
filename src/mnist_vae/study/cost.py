"""What a study will cost before it starts: each run's training and NLL time, measured on a few steps here.

The study prints this estimate first (``mnist-vae study --estimate`` prints it and stops). A run
costs ``epochs × train images / training rate`` plus ``K × test images / decoder rate`` plus a
fixed part for the rest of the evaluation (ELBO terms, probe, samples); the rates are timed on
this machine, with the study's threads per job and precision, on a few steps of the real model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..config import EvalConfig, RunConfig
from ..evaluation.likelihood import decoder_rate
from ..models import VAE
from ..runtime.device import resolve_device, resolve_precision
from ..runtime.process import set_threads
from ..training.step import TrainStep

#: An allowance, not a measurement of this machine: seconds of evaluation besides the NLL (ELBO
#: terms, encoding the training set, the probe, 10,000 samples judged by the classifier). Runs on
#: one core of a 2-core CPU took 5-16 s (eval.json: eval_seconds minus the NLL's seconds).
OTHER_EVAL_S = 15.0


@dataclass(frozen=True)
class RunCost:
    """Estimated seconds of one run (one configuration, one seed)."""

    config: str
    train_s: float
    nll_s: float
    other_s: float

    @property
    def total_s(self) -> float:
        return self.train_s + self.nll_s + self.other_s


def training_rate(cfg: RunConfig, steps: int = 4, warmup: int = 2) -> float:
    """Training images per second of ``cfg`` here: the run's own :class:`~mnist_vae.training.step.TrainStep`
    (optimizer, scaler, precision, loss) on random digits."""
    device = resolve_device(cfg.train.device)
    t = cfg.replace(precision=resolve_precision(cfg.train.precision, device)).train
    torch.manual_seed(0)
    model = VAE(cfg.model).to(device)
    model.channels_last = t.channels_last
    step = TrainStep(model, model, t, device, total_steps=warmup + steps)
    x = torch.rand(t.batch_size, 28, 28, device=device)
    shape = (t.batch_size, cfg.model.latent_dim) if t.iwae_k == 1 else (t.iwae_k, t.batch_size, cfg.model.latent_dim)
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        loss, _, _ = step(x, torch.randn(shape, device=device), 1.0)
        loss.item()  # waits for an accelerator
        times.append(time.perf_counter() - start)
    return t.batch_size / sorted(times[warmup:])[steps // 2]


def estimate(
    configs: dict[str, RunConfig], seeds: int, settings: EvalConfig, n_train: int, n_test: int, screen: bool = False
) -> list[RunCost]:
    """Estimated cost of every run of a study, measured config by config with each run's thread count
    (a ``screen`` gets no allowance for the classifier's part of the evaluation)."""
    out = []
    for name, cfg in configs.items():
        set_threads(cfg.train.threads)
        rate = training_rate(cfg)
        device = resolve_device(cfg.train.device)
        nll_rate = decoder_rate(VAE(cfg.model).to(device).eval(), settings.chunk, resolve_precision(settings.precision, device))
        train_s = cfg.train.epochs * n_train / rate
        nll_s = settings.k * n_test / nll_rate
        out += [RunCost(name, train_s, nll_s, 0.0 if screen else OTHER_EVAL_S)] * seeds
    return out


def left_to_do(costs: list[RunCost], left: list[tuple[float, float]], workers: int) -> str | None:
    """A log line for a study that is partly done (``left``: per run, the share of training and of evaluation
    still to do, in the order of ``costs``); None when nothing has been done yet."""
    rest = [RunCost(c.config, c.train_s * t, c.nll_s * e, c.other_s * e) for c, (t, e) in zip(costs, left)]
    finished = sum(1 for t, e in left if t == 0 and e == 0)
    partly = sum(1 for t, e in left if 0 < t < 1 or (t == 0 and e > 0))
    if not finished and not partly:
        return None
    return (
        f"  left to do: {finished} of {len(left)} run(s) already finished, {partly} partly trained; about "
        f"{wall_estimate([r for r in rest if r.total_s > 0], workers) / 60:.0f} min wall with {workers} job(s)"
    )


def wall_estimate(costs: list[RunCost], workers: int) -> float:
    """Wall seconds of the runs on ``workers`` workers, longest first, each taken by the first free worker."""
    free = [0.0] * max(1, workers)
    for c in sorted(costs, key=lambda c: c.total_s, reverse=True):
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += c.total_s
    return max(free) if costs else 0.0


def describe(costs: list[RunCost], workers: int) -> list[str]:
    """Lines for the log: per configuration, then the total."""
    lines = []
    for name in dict.fromkeys(c.config for c in costs):
        mine = [c for c in costs if c.config == name]
        c = mine[0]
        lines.append(
            f"  {name}: {len(mine)} run(s) x (training {c.train_s / 60:.1f} min + NLL {c.nll_s / 60:.1f} min "
            f"+ {c.other_s / 60:.1f} min allowed for the rest of the evaluation)"
        )
    train, nll = sum(c.train_s for c in costs), sum(c.nll_s for c in costs)
    wall = wall_estimate(costs, workers)
    lines.append(
        f"  in all: training {train / 60:.0f} min, NLL {nll / 60:.0f} min of work; about {wall / 60:.0f} min wall "
        f"with {workers} job(s) (estimated from a few timed steps; {_share(nll, train + nll)} of it the NLL)"
    )
    return lines


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole and math.isfinite(whole) else "n/a"


def as_dict(costs: list[RunCost], workers: int) -> dict[str, Any]:
    """The estimate for study.json."""
    return {
        "runs": [{"config": c.config, "train_s": c.train_s, "nll_s": c.nll_s, "other_s": c.other_s} for c in costs],
        "wall_s": wall_estimate(costs, workers),
        "workers": workers,
    }
