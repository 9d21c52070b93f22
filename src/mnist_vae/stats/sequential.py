"""Verdicts that stay valid when a study adds seeds while it looks: an anytime-valid t-test.

A fixed-n 95% interval is valid for one look at a number of seeds chosen in advance. A study that
adds seeds until the interval clears the threshold looks many times, and each look is another
chance of a false verdict (optional stopping). The procedure here is valid at every look at once.

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
reached, stays. With g = 1 the mixture puts its weight on effects of about one standard deviation.

No library is used: the PyPI packages for anytime-valid inference either need a C++ build
(``confseq``) or Python ≥ 3.11 with scipy and cvxpy (``savvi``), and neither offers this t-test
directly; the formula above is a few lines.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from .intervals import Interval, finite, t975, too_few

ALPHA = 0.05
#: Variance of the standardized effect δ = (μ − μ0)/σ under the mixture. 10 puts the weight on effects
#: of a few standard deviations, as a write-up's claims mostly are: a claim whose effect is many times
#: its seed-to-seed spread can then settle at three seeds (the multiplier is 13.2 there; with g = 1
#: nothing could settle before five seeds), at the price of a slightly wider interval later on
#: (3.81 at 20 seeds against 3.42 with g = 1; the fixed-n t quantile is 2.09).
G = 10.0


def log_bayes_factor(t: float, n: int, g: float = G) -> float:
    """log BF_n of the t statistic ``t`` from ``n`` values (n ≥ 2), against μ = μ0; +inf for an infinite t."""
    if n < 2:
        return 0.0
    nu, ng = n - 1, n * g
    if math.isinf(t):
        return math.inf
    u = t * t / nu
    return -0.5 * math.log1p(ng) + 0.5 * n * (math.log1p(u) - math.log1p(u / (1 + ng)))


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


def _prefix_stats(values: Sequence[float]) -> list[tuple[int, float, float]]:
    """(n, mean, sd) of every prefix of ``values`` with n ≥ 2 (Welford's running update, one pass)."""
    out, mean, m2 = [], 0.0, 0.0
    for n, x in enumerate(values, 1):
        delta = x - mean
        mean += delta / n
        m2 += delta * (x - mean)
        if n >= 2:
            out.append((n, mean, math.sqrt(max(m2, 0.0) / (n - 1))))
    return out


def confidence_sequence(values: Sequence[float], alpha: float = ALPHA, g: float = G) -> Interval:
    """The anytime-valid interval after the values in order (seed order): the intersection of the
    confidence sequence over every prefix of two or more values. n = 1 gives an unbounded interval."""
    vals = finite(values)
    if (few := too_few(vals)) is not None:
        return few
    mean = statistics.fmean(vals)
    lo, hi = -math.inf, math.inf
    for n, m, sd in _prefix_stats(vals):
        half = cs_multiplier(n, alpha, g) * sd / math.sqrt(n)
        if math.isnan(half):  # sd 0 and an infinite multiplier: this look says nothing
            continue
        lo, hi = max(lo, m - half), min(hi, m + half)
    sd = statistics.stdev(vals)
    if lo > hi:  # the sequences of two looks do not overlap (probability <= alpha): keep the last look's
        half = cs_multiplier(len(vals), alpha, g) * sd / math.sqrt(len(vals))
        lo, hi = mean - half, mean + half
    return Interval(vals, mean, sd, lo, hi)


def anytime_p(values: Sequence[float], threshold: float = 0.0, g: float = G) -> float:
    """The anytime-valid p-value of "mean = threshold": 1 / the largest Bayes factor over every look (at most 1)."""
    vals = [v - threshold for v in finite(values)]
    best = 0.0
    for n, m, sd in _prefix_stats(vals):
        t = math.copysign(math.inf, m) if sd == 0 and m != 0 else (0.0 if sd == 0 else m / (sd / math.sqrt(n)))
        best = max(best, log_bayes_factor(t, n, g))
    return min(1.0, math.exp(-best))


# --- the fixed-n side: Student-t tail probabilities and quantiles -----------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (bisection on :func:`t_sf`)."""
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if 1 - t_sf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


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


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected with family-wise error ≤ ``alpha``."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected = [False] * len(pvalues)
    m = len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] <= alpha / (m - rank):
            rejected[i] = True
        else:
            break
    return rejected
