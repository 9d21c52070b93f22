"""False verdicts of the study's procedures under the nasty nulls of each kind of number (docs/evaluation.md).

    python experiments/sequential_validity.py [--sims 4000] [--studies 300] [--out docs/results/cpu/sequential_validity.json]

Part 1. Each simulated claim starts with 3 seeds and is looked at after every added seed, up to 20 and up to 100;
its true mean is exactly at the threshold, so any verdict is false. The shipped procedures run: the t-mixture
(``mnist_vae.stats.sequential.log_bf_looks``, for unbounded numbers) and the betting confidence sequence
(``mnist_vae.stats.betting.log_wealth``, for bounded ones; values rescaled into [0, 1]).

``--power-only``: the mean seeds a true effect of 1 sd takes to settle, for several mixture variances g, and the
floor under any anytime-valid t-test at the same error: the likelihood ratio of the t statistics for exactly the
true effect (±1 sd, half the weight each; the growth-optimal e-process for that effect, which a real study cannot
use since it does not know the effect), at the same threshold 1/α (α/2 per direction).

Part 2. Whole null studies: the real claim catalogue, ``next_round``'s allocation, looks after every round, every
claim at its threshold with the nastiest values of its kind (tests/test_family_wise.py, with more studies): the
share of studies with any false verdict in the family-wise headline, and with any false per-claim verdict.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_vae.io import atomic_write_text
from mnist_vae.stats import betting
from mnist_vae.stats.sequential import ALPHA, log_bf_looks, prefix_stats

FIRST = 3


def draws(kind: str, rng: np.random.Generator, sims: int, n: int) -> tuple[np.ndarray, float, bool]:
    """(values, their true mean, whether they lie in [0, 1])."""
    if kind == "normal":
        return rng.normal(0.0, 1.0, (sims, n)), 0.0, False
    if kind == "t3":
        return rng.standard_t(3, (sims, n)), 0.0, False
    if kind.startswith("lognormal"):
        sigma = float(kind.split("=")[1])
        return rng.lognormal(0.0, sigma, (sims, n)), math.exp(sigma**2 / 2), False
    if kind.startswith("capped lognormal"):  # lognormal σ = 1 capped at its 99th percentile, scaled into [0, 1]
        cap, nd = math.exp(2.3263478740408408), statistics.NormalDist()
        mean = (math.exp(0.5) * nd.cdf(math.log(cap) - 1) + cap * (1 - nd.cdf(math.log(cap)))) / cap
        return np.minimum(rng.lognormal(0.0, 1.0, (sims, n)) / cap, 1.0), mean, True
    if kind == "two-point 31/32":  # 16 of 16 almost always, a collapse to 0 once in 32 seeds (scaled)
        return (rng.random((sims, n)) < 31 / 32).astype(float), 31 / 32, True
    if kind == "two-point 1/2":
        return (rng.random((sims, n)) < 0.5).astype(float), 0.5, True
    if kind == "uniform":
        return rng.random((sims, n)), 0.5, True
    raise ValueError(kind)


KINDS = ("normal", "t3", "lognormal σ=0.5", "lognormal σ=1", "capped lognormal", "two-point 31/32", "two-point 1/2", "uniform")


def false_share(x: np.ndarray, mean: float, procedure: str) -> float:
    """The share of simulated claims with a verdict at some look from 3 seeds on."""
    if procedure == "t-mixture":
        return float(np.mean(np.max(log_bf_looks(x, mean)[:, FIRST - 1 :], axis=1) >= math.log(1 / ALPHA)))
    plus, minus = betting.log_wealth(x, mean)
    return float(np.mean(np.maximum(plus, minus)[:, -1] >= math.log(2 / ALPHA)))


def part1(sims: int) -> list[dict]:
    rng, rows = np.random.default_rng(0), []
    for kind in KINDS:
        for horizon in (20, 100):
            x, mean, bounded = draws(kind.replace("σ=", "="), rng, sims, horizon)
            row: dict[str, Any] = {"values": kind, "looks_to": horizon, "t-mixture": false_share(x, mean, "t-mixture")}
            row["betting"] = false_share(x, mean, "betting") if bounded else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def part2(studies: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_family_wise as fw  # the test's simulation of a whole study, with more studies

    claims, rng, family, per_claim, t0 = fw._null_claims(), np.random.default_rng(7), 0, 0, time.monotonic()
    for i in range(studies):
        f, p = fw.one_study_counts(claims, rng)
        family, per_claim = family + (f > 0), per_claim + (p > 0)
        if time.monotonic() - t0 > 5 or i + 1 == studies:
            print(f"  {i + 1}/{studies} studies: family-wise {family / (i + 1):.3f}, per claim {per_claim / (i + 1):.3f}", flush=True)
            t0 = time.monotonic()
    return {"studies": studies, "any_false_family_wise": family / studies, "any_false_per_claim": per_claim / studies}


_R = np.linspace(1e-6, 40.0, 4001)  # quadrature grid for the chi-distributed radius below


def log_lr_point(t: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """log of the noncentral-t to central-t density ratio at t (n values, effect ``delta`` sd): the Bayes factor of a
    point alternative with the scale's right-Haar prior, E[exp(λ·t·r/√(ν + t²))]·exp(−λ²/2) with λ = δ√n and r
    chi-distributed with n degrees of freedom (by quadrature)."""
    nu, lam = n - 1.0, delta * np.sqrt(n)
    a = lam * t / np.sqrt(nu + t * t)
    const = np.array([(k / 2 - 1) * math.log(2) + math.lgamma(k / 2) for k in n.ravel()]).reshape(n.shape)
    x = (n - 1)[..., None] * np.log(_R) - _R**2 / 2 - const[..., None] + a[..., None] * _R
    top = x.max(axis=-1, keepdims=True)
    return top[..., 0] + np.log(np.exp(x - top).sum(axis=-1) * (_R[1] - _R[0])) - lam**2 / 2


def oracle_log_e(x: np.ndarray, delta: float = 1.0) -> np.ndarray:
    """log of ½·LR(+δ) + ½·LR(−δ) at every look of ``x`` [sims, N] (0 at n = 1)."""
    n, mean, sd = prefix_stats(x)
    n = np.broadcast_to(n, x.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(n < 2, 0.0, mean / (sd / np.sqrt(n)))
    both = np.logaddexp(log_lr_point(t, np.maximum(n, 2.0), delta), log_lr_point(t, np.maximum(n, 2.0), -delta)) - math.log(2)
    return np.where(n < 2, 0.0, both)


def seeds_to_settle(sims: int) -> list[dict[str, Any]]:
    """Mean seeds to a verdict (20 if none by then) and power at 20, for a true effect of 1 sd, by the mixture's g."""
    x = np.random.default_rng(0).normal(1.0, 1.0, (sims, 20))
    out: list[dict[str, Any]] = []
    for g in (0.5, 1.0, 2.0, 3.0, 5.0, 10.0):
        hit = log_bf_looks(x, 0.0, g)[:, FIRST - 1 :] >= math.log(1 / ALPHA)
        first = np.where(hit.any(axis=1), hit.argmax(axis=1) + FIRST, 20)
        out.append({"g": g, "mean_seeds": float(first.mean()), "power_at_20": float(hit.any(axis=1).mean())})
        print(json.dumps(out[-1]), flush=True)
    hit = oracle_log_e(x)[:, FIRST - 1 :] >= math.log(1 / ALPHA)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1) + FIRST, 20)
    out.append({"g": "oracle: the true effect, ±1 sd", "mean_seeds": float(first.mean()), "power_at_20": float(hit.any(axis=1).mean())})
    print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sims", type=int, default=4000)
    p.add_argument("--studies", type=int, default=300)
    p.add_argument("--out", type=Path, default=Path("docs/results/cpu/sequential_validity.json"))
    p.add_argument("--power-only", action="store_true", help="print only the seeds a 1-sd effect takes to settle, by g")
    args = p.parse_args()
    if args.power_only:
        seeds_to_settle(args.sims)
        return
    result = {"alpha": ALPHA, "first": FIRST, "sims": args.sims, "claims": part1(args.sims), "study": part2(args.studies)}
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print("| per-seed values | looks up to | t-mixture (unbounded kind) | betting (bounded kind) |")
    print("|---|---|---|---|")
    for r in result["claims"]:
        bet = "—" if r["betting"] is None else f"{r['betting']:.1%}"
        print(f"| {r['values']} | {r['looks_to']} | {r['t-mixture']:.1%} | {bet} |")
    print(json.dumps(result["study"]))


if __name__ == "__main__":
    main()
