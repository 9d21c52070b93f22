"""Verdicts that stay valid when a study adds seeds while it looks: an anytime-valid t-test.

A fixed-n 95% interval is valid for one look at a number of seeds chosen in advance. A study that
adds seeds until the interval clears the threshold looks many times, and each look is another
chance of a false verdict (optional stopping). The procedure here is valid at every look at once.
It is the procedure for **unbounded** numbers (nats of NLL, KL or reconstruction, a Fréchet
distance); numbers with a known range (shares, entropies, counts, epochs) take the betting
confidence sequence of :mod:`mnist_vae.stats.betting`, which assumes nothing about their shape.

**Method.** For per-seed values x_1, x_2, ... ~ N(μ, σ²) with σ unknown, the Bayes factor for
μ = μ0 against μ − μ0 = δσ with δ ~ N(0, g), taking the scale's right-Haar prior p(σ) ∝ 1/σ, has
a closed form in the ordinary t statistic (Rouder et al., 2009, eq. 1 with a fixed g):

    BF_n = (1 + n·g)^(−1/2) · [(1 + t²/ν) / (1 + t²/(ν·(1 + n·g)))]^(n/2),   ν = n − 1.

Because the prior on the scale is the right Haar measure of the scale group, this Bayes factor is
a nonnegative martingale with mean 1 under μ = μ0 (in the filtration of the scale-invariant data),
so by Ville's inequality P(BF_n ≥ 1/α for some n) ≤ α: Pérez-Ortiz, Lardy, de Heide & Grünwald,
"E-statistics, group invariance and anytime-valid testing", Annals of Statistics 52 (2024); Wang &
Ramdas, "Anytime-valid t-tests and confidence sequences for Gaussian means with unknown variance",
Sequential Analysis (2025), who also give the confidence sequence below. The set of μ0 it does not
reject is x̄_n ± c_n·s_n/√n, a t-interval with a wider multiplier c_n (closed form,
:func:`cs_multiplier`); the running intersection over every look is again valid, so a verdict, once
reached, stays.

**Ties.** Values that all tie give t = ∞, where the Bayes factor is finite: (1 + n·g)^((n−1)/2), 4.58
at n = 2 and 31 at n = 3 with g = 10, so three tied values can never give a p-value below 1/31. A
tie is also a sign that the numbers are not normal (they are counts or rounded); a look whose
values all tie therefore does not narrow the interval, which never has width zero.

**Conflicting looks.** If two looks' intervals do not overlap (probability at most α), the running
intersection is empty; the interval of the last look where it was not is kept, so a verdict that
was reached is never taken back.

**Its limit.** The t-mixture assumes roughly normal per-seed values. Symmetric heavy tails are
harmless (Student t with 3 degrees of freedom: 1.4% false verdicts), strong skew is not (lognormal
σ = 1: about 20%); docs/evaluation.md gives the table, and why the study's unbounded measures
(differences of nats between configurations of one seed) are close to symmetric.

No library is used: the PyPI packages for anytime-valid inference either need a C++ build
(``confseq``) or Python ≥ 3.11 with scipy and cvxpy (``savvi``), and neither offers this t-test
directly; the formula above is a few lines.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .intervals import Interval, finite, too_few
from .tdist import t975, t_quantile, t_sf

ALPHA = 0.05
#: Variance of the standardized effect δ = (μ − μ0)/σ under the mixture. 10 puts the weight on effects
#: of a few standard deviations, as a write-up's claims mostly are: a claim whose effect is many times
#: its seed-to-seed spread can then settle at three seeds (the multiplier is 13.2 there; with g = 1
#: nothing could settle before five seeds), at the price of a slightly wider interval later on
#: (3.81 at 20 seeds against 3.42 with g = 1; the fixed-n t quantile is 2.09).
G = 10.0


def log_bayes_factor(t: float, n: int, g: float = G) -> float:
    """log BF_n of the t statistic ``t`` from ``n`` values (n ≥ 2), against μ = μ0. An infinite t (values that
    all tie, away from μ0) gives the finite limit ((n − 1)/2)·log(1 + n·g)."""
    if n < 2:
        return 0.0
    nu, ng = n - 1, n * g
    if math.isinf(t):
        return 0.5 * nu * math.log1p(ng)
    u = t * t / nu
    return -0.5 * math.log1p(ng) + 0.5 * n * (math.log1p(u) - math.log1p(u / (1 + ng)))


@lru_cache(maxsize=4096)
def cs_multiplier(n: int, alpha: float = ALPHA, g: float = G) -> float:
    """c_n: the confidence sequence at n values is mean ± c_n·sd/√n (inf when n is too small for any bound)."""
    if n < 2:
        return math.inf
    nu, ng = n - 1, n * g
    a = math.exp((2.0 / n) * (math.log(1 / alpha) + 0.5 * math.log1p(ng)))  # [(1+u)/(1+u/(1+ng))] must reach this
    if a >= 1 + ng:
        return math.inf
    u = (a - 1) / (1 - a / (1 + ng))
    return math.sqrt(nu * u)


def prefix_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, sd) of every prefix of ``values`` [..., N] (Welford's update; sd is NaN at n = 1)."""
    x = np.asarray(values, dtype=np.float64)
    n = np.arange(1, x.shape[-1] + 1, dtype=np.float64)
    mean = np.cumsum(x, axis=-1) / n
    before = np.concatenate([np.zeros(x.shape[:-1] + (1,)), mean[..., :-1]], axis=-1)
    m2 = np.cumsum((x - before) * (x - mean), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(np.maximum(m2, 0.0) / (n - 1))
    return n, mean, sd


def ties(values: np.ndarray) -> np.ndarray:
    """Whether every value up to each look equals the first (exactly: counts and rounded numbers tie exactly)."""
    x = np.asarray(values, dtype=np.float64)
    return np.maximum.accumulate(x, axis=-1) == np.minimum.accumulate(x, axis=-1)


def log_bf_looks(values: np.ndarray, threshold: float = 0.0, g: float = G) -> np.ndarray:
    """log BF_n of "mean = threshold" at every look n = 1..N of ``values`` [..., N] (0 at n = 1); tied looks are finite."""
    x = np.asarray(values, dtype=np.float64)
    n, mean, sd = prefix_stats(x - threshold)
    nu, ng = np.maximum(n - 1, 1.0), n * g
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (mean / (sd / np.sqrt(n))) ** 2 / nu
        out = -0.5 * np.log1p(ng) + 0.5 * n * (np.log1p(u) - np.log1p(u / (1 + ng)))
    tied = ties(x)
    away = x[..., :1] != threshold
    out = np.where(tied & away, 0.5 * nu * np.log1p(ng), np.where(tied, -0.5 * np.log1p(ng), out))
    return np.where(n < 2, 0.0, out)


def confidence_sequence(values: Sequence[float], alpha: float = ALPHA, g: float = G) -> Interval:
    """The anytime-valid interval after the values in order (seed order): the intersection of the confidence
    sequence over every look with two or more values that do not all tie. n = 1 gives an unbounded interval;
    if the looks conflict, the last non-empty intersection is kept (see the module's docstring)."""
    vals = finite(values)
    if (few := too_few(vals)) is not None:
        return few
    lo, hi = -math.inf, math.inf
    _, mean, sd = prefix_stats(np.asarray(vals))
    tied = ties(np.asarray(vals))
    for k in range(1, len(vals)):
        c = cs_multiplier(k + 1, alpha, g)
        if tied[k] or not math.isfinite(c):  # ties, or too few values for any bound: this look says nothing
            continue
        half = c * sd[k] / math.sqrt(k + 1)
        if max(lo, mean[k] - half) > min(hi, mean[k] + half):
            break  # conflicting looks: keep what was reached
        lo, hi = max(lo, mean[k] - half), min(hi, mean[k] + half)
    return Interval(vals, statistics.fmean(vals), statistics.stdev(vals), float(lo), float(hi))


def anytime_p(values: Sequence[float], threshold: float = 0.0, g: float = G) -> float:
    """The anytime-valid p-value of "mean = threshold": 1 / the largest Bayes factor over every look (at most 1)."""
    vals = finite(values)
    if len(vals) < 2:
        return 1.0
    return min(1.0, math.exp(-float(np.max(log_bf_looks(np.asarray(vals), threshold, g)))))


def fixed_p(values: Sequence[float], threshold: float = 0.0) -> float:
    """The two-sided one-sample t-test p-value of "mean = threshold" (1 for fewer than two values)."""
    vals = [v - threshold for v in finite(values)]
    if len(vals) < 2:
        return 1.0
    m, sd = statistics.fmean(vals), statistics.stdev(vals)
    if sd == 0:
        return 1.0 if m == 0 else 0.0
    return min(1.0, 2 * t_sf(abs(m) / (sd / math.sqrt(len(vals))), len(vals) - 1))


def seeds_for_power(diff: Interval, threshold: float = 0.0, power: float = 0.8, sequential: bool = False, limit: int = 500) -> int | None:
    """About how many seeds in all give the procedure ``power`` (default 80%) to settle the claim, if the true
    effect and spread are as observed (normal approximation: (c_n + z_power)·sd/√n ≤ |effect − threshold|,
    with c_n the fixed-n t quantile or, ``sequential``, the confidence sequence's multiplier).

    None when it cannot be told (fewer than two seeds, no spread, or the mean on the threshold); ``limit``
    when even that many would not do.
    """
    if diff.n < 2 or not math.isfinite(diff.sd) or diff.sd == 0:
        return None
    gap = abs(diff.mean - threshold)
    if gap == 0:
        return None
    z = statistics.NormalDist().inv_cdf(power)
    for n in range(2, limit + 1):
        c = cs_multiplier(n) if sequential else t975(n - 1)
        if (c + (z if sequential else t_quantile(power, n - 1))) * diff.sd / math.sqrt(n) <= gap:
            return n
    return limit


def holm(pvalues: Sequence[float], alpha: float = ALPHA, groups: Sequence[object] | None = None) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected with family-wise error ≤ ``alpha``, under any dependence.

    ``groups``: hypotheses of one group cannot be true together (a claim's "mean = threshold" and "|mean − threshold| ≥
    margin"); each step then divides α by the number of groups left rather than of hypotheses (Shaffer's S1, 1986).
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    label = list(range(len(pvalues))) if groups is None else list(groups)
    rejected = [False] * len(pvalues)
    for rank, i in enumerate(order):
        left = len({label[j] for j in order[rank:]})
        if pvalues[i] <= alpha / left:
            rejected[i] = True
        else:
            break
    return rejected
