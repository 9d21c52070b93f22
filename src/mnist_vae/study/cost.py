"""What a study will cost before it starts: each run's training and NLL time, measured on a few steps here,
or, once runs of a configuration have finished in the study folder, what they took.

The study prints this estimate first (``mnist-vae study --estimate`` prints it and stops). A run
costs ``epochs × train images / training rate`` plus ``K × test images / decoder rate`` plus a
fixed part for the rest of the evaluation (ELBO terms, probe, samples); the rates are timed on
this machine, with the study's threads per job and precision, on the real model. The digit
classifier's first training (once per dataset, before the runs) comes on top when it is not cached.

The timed steps run in one process alone, so they miss what runs side by side cost each other. A
finished run records its training and evaluation seconds; from those, per configuration and number
of jobs, the study learns what its runs take here, beside each other (:func:`observe`, :func:`learn`),
and, from the rounds it timed, how much the round's wall time adds to them (starting the workers,
the per-epoch test ELBO, checkpoints). ``--until-settled`` checks its budget against the upper end
of what it observed (:func:`round_estimate`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..config import EvalConfig, RunConfig
from ..data import Dataset
from ..evaluation.classifier import cached_classifier, estimate_training_seconds
from ..evaluation.likelihood import TIMING_SHARE, decoder_rate
from ..models import VAE, build_model
from ..runs.folder import RUN_MARKER
from ..runtime.device import resolve_device, resolve_precision
from ..runtime.process import set_threads
from ..training.step import TrainStep
from .jobs import Job, evaluated, table_row

#: An allowance, not a measurement of this machine: seconds of evaluation besides the NLL (ELBO
#: terms, encoding the training set, the probe, 10,000 samples judged by the classifier). Runs on
#: one core of a 2-core CPU took 5-16 s (eval.json: eval_seconds minus the NLL's seconds).
OTHER_EVAL_S = 15.0


#: Steps the training rate is timed on at least, and the seconds they take at least (a fast model
#: takes more steps): a median of a few short steps moved by a fifth between two idle runs.
MIN_STEPS, MIN_TIMED_S, MAX_STEPS = 8, 2.0, 200
#: Seconds the NLL's decoder is timed for at most.
NLL_TIMED_S = 1.0
#: The name of the classifier's first training among the costs (it runs once, before the runs).
CLASSIFIER = "(digit classifier, first training)"


@dataclass(frozen=True)
class RunCost:
    """Estimated seconds of one run (one configuration, one seed): timed on a few steps (``runs`` 0), or the
    mean of ``runs`` finished runs of the study, ``upper_s`` the longest of them. ``first``: a cost paid
    once before the runs (the classifier's training), not beside them."""

    config: str
    train_s: float
    nll_s: float
    other_s: float
    runs: int = 0
    upper_s: float = 0.0
    first: bool = False

    @property
    def total_s(self) -> float:
        return self.train_s + self.nll_s + self.other_s

    @property
    def upper(self) -> float:
        """The upper end of what this run may take: the longest measured, else the estimate."""
        return max(self.upper_s, self.total_s)


def training_rate(cfg: RunConfig, steps: int = MIN_STEPS, warmup: int = 3, seconds: float = MIN_TIMED_S, images: float = math.inf) -> float:
    """Training images per second of ``cfg`` here: the run's own :class:`~mnist_vae.training.step.TrainStep`
    (optimizer, scaler, precision, loss) on random digits; the median of at least ``steps`` steps that
    take at least ``seconds`` together (up to MAX_STEPS), or TIMING_SHARE of what training ``images`` takes."""
    device = resolve_device(cfg.train.device)
    t = cfg.replace(precision=resolve_precision(cfg.train.precision, device)).train
    torch.manual_seed(0)
    model = build_model(cfg, device)
    step = TrainStep(model, model, t, device, total_steps=warmup + MAX_STEPS)
    x = torch.rand(t.batch_size, 28, 28, device=device)
    shape = (t.batch_size, cfg.model.latent_dim) if t.iwae_k == 1 else (t.iwae_k, t.batch_size, cfg.model.latent_dim)
    times: list[float] = []
    while True:
        start = time.perf_counter()
        loss, _, _ = step(x, torch.randn(shape, device=device), 1.0)
        loss.item()  # waits for an accelerator
        times.append(time.perf_counter() - start)
        timed = times[warmup:]
        if len(timed) >= steps:
            rate = t.batch_size / statistics.median(timed)
            if sum(timed) >= min(seconds, TIMING_SHARE * images / rate) or len(timed) >= MAX_STEPS:
                return rate


def estimate(
    configs: dict[str, RunConfig],
    seeds: int,
    settings: EvalConfig,
    n_train: int,
    n_test: int,
    screen: bool = False,
    seen: Observed | None = None,
    workers: int = 1,
) -> list[RunCost]:
    """Estimated cost of every run of a study, measured config by config with each run's thread count
    (a ``screen`` gets no allowance for the classifier's part of the evaluation). A configuration with
    finished runs at ``workers`` jobs in ``seen`` is costed by them (:func:`learn`), without timing it again."""
    out = []
    for name, cfg in configs.items():
        runs = seen.runs.get((name, workers)) if seen is not None else None
        if runs:
            out += [_measured(RunCost(name, 0.0, 0.0, 0.0), runs)] * seeds
            continue
        set_threads(cfg.train.threads)
        rate = training_rate(cfg, images=seeds * cfg.train.epochs * n_train)
        device = resolve_device(cfg.train.device)
        model = VAE(cfg.model).to(device).eval()
        precision = resolve_precision(settings.precision, device)
        nll_rate = decoder_rate(model, settings.chunk, precision, seconds=NLL_TIMED_S, codes=seeds * settings.k * n_test)
        train_s = cfg.train.epochs * n_train / rate
        nll_s = settings.k * n_test / nll_rate
        out += [RunCost(name, train_s, nll_s, 0.0 if screen else OTHER_EVAL_S)] * seeds
    set_threads(0)  # this process shares again: it was left at the last run's count, and trains the classifier next
    return out


def finished(jobs: list[Job]) -> list[dict[str, Any]]:
    """The rows (configuration, seed, seconds) of the ``jobs`` already trained and evaluated; the others are left out."""
    return [{**table_row(Path(j.run_dir), ev), "config": j.config, "seed": j.seed} for j in jobs if (ev := evaluated(j)) is not None]


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


def wall_estimate(costs: list[RunCost], workers: int, upper: bool = False) -> float:
    """Wall seconds of the runs on ``workers`` workers, longest first, each taken by the first free worker,
    after the costs paid first (``upper``: each run at the upper end of what it may take)."""

    def seconds(c: RunCost) -> float:
        return c.upper if upper else c.total_s

    free = [0.0] * max(1, workers)
    runs = [c for c in costs if not c.first]
    for c in sorted(runs, key=seconds, reverse=True):
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += seconds(c)
    return sum(seconds(c) for c in costs if c.first) + (max(free) if runs else 0.0)


def classifier_cost(dataset: Dataset) -> RunCost | None:
    """The digit classifier's first training (once per dataset, before the runs); None when it is cached."""
    if cached_classifier(dataset) is not None:
        return None
    return RunCost(CLASSIFIER, estimate_training_seconds(dataset), 0.0, 0.0, first=True)


def describe(costs: list[RunCost], workers: int) -> list[str]:
    """Lines for the log: per configuration, the classifier's first training, then the total."""
    lines = []
    runs = [c for c in costs if not c.first]
    for name in dict.fromkeys(c.config for c in runs):
        mine = [c for c in runs if c.config == name]
        c = mine[0]
        parts = (
            f"training {c.train_s / 60:.1f} min + NLL {c.nll_s / 60:.1f} min + {c.other_s / 60:.1f} min "
            f"{'for' if c.runs else 'allowed for'} the rest of the evaluation"
        )
        if c.runs:
            parts += f"; measured: the mean of {c.runs} finished run(s) with {workers} job(s), the longest {c.upper / 60:.1f} min"
        lines.append(f"  {name}: {len(mine)} run(s) x ({parts})")
    for c in costs:
        if c.first:
            lines.append(
                f"  first: the digit classifier that judges samples is not cached for this dataset yet; "
                f"training it (once per dataset) takes about {c.total_s / 60:.1f} min"
            )
    train, nll = sum(c.train_s for c in runs), sum(c.nll_s for c in runs)
    wall, upper = wall_estimate(costs, workers), wall_estimate(costs, workers, upper=True)
    longest = f" (up to {upper / 60:.0f} min)" if upper > wall * 1.005 else ""
    lines.append(
        f"  in all: training {train / 60:.0f} min, NLL {nll / 60:.0f} min of work; about {wall / 60:.0f} min wall{longest} "
        f"with {workers} job(s) ({source(costs)}; {_share(nll, train + nll)} of it the NLL)"
    )
    return lines


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole and math.isfinite(whole) else "n/a"


def as_dict(costs: list[RunCost], workers: int) -> dict[str, Any]:
    """The estimate for study.json."""
    return {
        "runs": [
            {"config": c.config, "train_s": c.train_s, "nll_s": c.nll_s, "other_s": c.other_s, "measured_runs": c.runs, "upper_s": c.upper}
            for c in costs
            if not c.first
        ],
        "classifier_s": sum(c.total_s for c in costs if c.first),
        "wall_s": wall_estimate(costs, workers),
        "upper_wall_s": wall_estimate(costs, workers, upper=True),
        "workers": workers,
    }


@dataclass(frozen=True)
class Observed:
    """What a study measured here. ``runs``: per (configuration, jobs), each finished run's (training,
    NLL, rest of the evaluation) seconds. ``overhead``: per round it timed, its wall time over the wall
    its runs' own seconds give (:func:`wall_estimate`): what starting workers, the per-epoch test ELBO
    and checkpoints add."""

    runs: dict[tuple[str, int], list[tuple[float, float, float]]] = field(default_factory=dict)
    overhead: list[float] = field(default_factory=list)


def run_seconds(row: dict[str, Any]) -> tuple[float, float, float] | None:
    """A finished run's (training, NLL, rest of the evaluation) seconds from its study row; None if it lacks them."""
    try:
        train, nll, evaluation = float(row["train_seconds"]), float(row["nll_seconds"]), float(row["eval_seconds"])
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(x) and x >= 0 for x in (train, nll, evaluation)):
        return None
    return train, nll, max(0.0, evaluation - nll)


def observe(rows: Iterable[dict[str, Any]], rounds: list[dict[str, list[int]]], timing: list[dict[str, Any]], workers: int) -> Observed:
    """What the finished ``rows`` tell: each run under the jobs of the round that ran it (``timing``, as
    rounds.json keeps it; ``workers`` where a round has no record, or for a run of no round)."""
    by_run = {(str(r["config"]), int(r["seed"])): t for r in rows if (t := run_seconds(r)) is not None}
    timed = {int(t["round"]): t for t in timing}
    seen = Observed()
    placed: set[tuple[str, int]] = set()
    for i, rnd in enumerate(rounds, 1):
        jobs = int(timed.get(i, {}).get("jobs") or workers)
        keys = [(n, k) for n, seeds in rnd.items() for k in seeds]
        for key in keys:
            if key in by_run and key not in placed:
                seen.runs.setdefault((key[0], jobs), []).append(by_run[key])
                placed.add(key)
        measured = timed.get(i, {}).get("measured_s")
        if measured and keys and all(key in by_run for key in keys):
            predicted = wall_estimate([RunCost(n, *by_run[(n, k)]) for n, k in keys], jobs)
            if predicted > 0:
                seen.overhead.append(float(measured) / predicted)
    for key in by_run.keys() - placed:
        seen.runs.setdefault((key[0], workers), []).append(by_run[key])
    return seen


def learn(costs: list[RunCost], seen: Observed, workers: int) -> list[RunCost]:
    """``costs`` with every configuration that has finished runs at ``workers`` jobs costed by them:
    the mean of each part, and the longest run as the upper end."""
    out = []
    for c in costs:
        runs = seen.runs.get((c.config, workers))
        out.append(c if c.first or not runs else _measured(c, runs))
    return out


def _measured(c: RunCost, runs: list[tuple[float, float, float]]) -> RunCost:
    """``c`` costed by finished runs: the mean of each part, the longest run as the upper end."""
    train, nll, rest = (statistics.fmean(x) for x in zip(*runs))
    return replace(c, train_s=train, nll_s=nll, other_s=rest, runs=len(runs), upper_s=max(sum(r) for r in runs))


def round_estimate(costs: list[RunCost], seen: Observed, workers: int) -> tuple[float, float]:
    """(estimate, upper end) of the wall seconds of a round of these runs: their wall on ``workers``
    workers times the mean (for the upper end: the largest) overhead of the rounds timed so far."""
    mean = statistics.fmean(seen.overhead) if seen.overhead else 1.0
    most = max(seen.overhead) if seen.overhead else 1.0
    estimate = wall_estimate(costs, workers) * mean
    return estimate, max(estimate, wall_estimate(costs, workers, upper=True) * most)


def source(costs: list[RunCost]) -> str:
    """Where an estimate of ``costs`` comes from, for the log."""
    runs = [c for c in costs if not c.first]
    measured = sum(1 for c in runs if c.runs)
    if not measured:
        return "estimated from a few timed steps"
    return "from finished runs of this study" + ("" if measured == len(runs) else "; the others estimated from a few timed steps")


def round_wall(rows: list[dict[str, Any]], since: float) -> float | None:
    """Wall seconds of a round that ran just now, in this process: from the first of its runs' folders being
    made (``time.time()`` clock) to now. None when one of them was made before ``since`` (by an earlier start
    of the study) or cannot be read."""
    try:
        first = min((Path(r["run"]) / RUN_MARKER).stat().st_mtime for r in rows)
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return None if first < since else time.time() - first
