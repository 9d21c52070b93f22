"""Anytime-valid inference for a bounded mean: the hedged betting confidence sequence.

For values known to lie in [a, b] (a share, an entropy, a count of active units, a number of
epochs) nothing about their shape is assumed: they may tie, be skewed, or sit on two points at
the ends of the range. Rescaled to y in [0, 1], a bettor who starts with 1 and stakes a fraction
λ_i of the wealth on "the mean is above m" holds, after n values,

    K⁺_n(m) = Π (1 + λ⁺_i · (y_i − m)),      K⁻_n(m) = Π (1 − λ⁻_i · (y_i − m)),

with stakes chosen from the values before y_i only. If the mean is m, both are nonnegative
martingales with mean 1, so by Ville's inequality the chance that either ever reaches 2/α is at
most α/2 each. A mean m is rejected once the wealth of either side has reached 2/α at some look;
the means never rejected form the confidence sequence, and the anytime p-value of "mean = m" is
min(1, 2 / the largest wealth so far). Both only ever shrink: a verdict, once reached, stays.

The stakes are the paper's predictable plug-in: λ_i = √(2·log(2/α) / (σ̂²_{i−1} · i · log(1 + i))),
with σ̂² a running variance that starts at 1/4, truncated at c/m (and c/(1 − m)) so that a single
value at the far end of the range can cost at most the fraction c of the wealth.

Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", Journal of the
Royal Statistical Society Series B 86(1), 2024, section 4 (hedged capital process, eq. 25-27).

**What it costs.** Validity for every bounded distribution means that a mean near an end of the
range cannot be separated from a rare value at the other end quickly: if 16 of 16 latent units are
active in every seed, a distribution that gives 16 almost always and 0 once in 32 looks the same,
and telling them apart takes dozens of seeds. The confidence sequence says so by staying wide.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np

ALPHA = 0.05
#: The largest fraction of its wealth a bet may stake against one value at the far end of the range.
TRUNCATION = 0.75
_GRID, _PASSES = 65, 4  # candidate means evaluated at once while locating a bound, and passes (resolution 64^-4)


def stakes(y: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The predictable plug-in stakes λ_1..λ_n for values ``y`` [..., n] in [0, 1] (before truncation)."""
    n = y.shape[-1]
    t = np.arange(1, n + 1, dtype=np.float64)
    mean = (0.5 + np.cumsum(y, axis=-1)) / (t + 1)  # μ̂_i, shrunk toward 1/2
    var = (0.25 + np.cumsum((y - mean) ** 2, axis=-1)) / (t + 1)  # σ̂²_i
    before = np.concatenate([np.full(y.shape[:-1] + (1,), 0.25), var[..., :-1]], axis=-1)  # σ̂²_{i−1}: predictable
    return np.sqrt(2 * math.log(2 / alpha) / (before * t * np.log1p(t)))


def log_wealth(y: np.ndarray, m: np.ndarray | float, alpha: float = ALPHA, lam: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The running maxima over looks of log K⁺_n(m) and log K⁻_n(m), each shaped like ``y`` [..., n].

    ``m`` is a mean in [0, 1], or an array of them broadcast against ``y``'s leading axes; ``lam``: the stakes of
    ``y`` if already computed (they do not depend on m).
    """
    y = np.asarray(y, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)[..., None]
    lam = stakes(y, alpha) if lam is None else lam
    with np.errstate(divide="ignore"):
        up = np.minimum(lam, TRUNCATION / m)
        down = np.minimum(lam, TRUNCATION / (1 - m))
    plus = np.maximum.accumulate(np.cumsum(np.log1p(up * (y - m)), axis=-1), axis=-1)
    minus = np.maximum.accumulate(np.cumsum(np.log1p(-down * (y - m)), axis=-1), axis=-1)
    return plus, minus


def scaled(values: Sequence[float], bounds: tuple[float, float]) -> np.ndarray:
    """``values`` rescaled from [a, b] to [0, 1]; a value outside the declared range is an error."""
    a, b = bounds
    if not b > a:
        raise ValueError(f"a bounded range needs a < b, got [{a}, {b}]")
    y = (np.asarray(values, dtype=np.float64) - a) / (b - a)
    if y.size and (y.min() < -1e-12 or y.max() > 1 + 1e-12):
        raise ValueError(f"a value lies outside the declared range [{a}, {b}]: {min(values)} .. {max(values)}")
    return np.clip(y, 0.0, 1.0)


def p_value(values: Sequence[float], bounds: tuple[float, float], threshold: float, alpha: float = ALPHA) -> float:
    """The anytime-valid p-value of "the mean is ``threshold``": min(1, 2 / the larger side's wealth so far)."""
    if not values:
        return 1.0
    a, b = bounds
    if not a <= threshold <= b:
        return 0.0  # a mean outside the range is impossible
    plus, minus = log_wealth(scaled(values, bounds), (threshold - a) / (b - a), alpha)
    return min(1.0, 2.0 * math.exp(-max(plus[-1], minus[-1])))


def _edge(y: np.ndarray, side: int, alpha: float) -> float:
    """The lower (side 0) or upper (side 1) end of the means not rejected after all of ``y`` (in [0, 1])."""
    level, lo, hi, lam = math.log(2 / alpha), 0.0, 1.0, stakes(y, alpha)
    for _ in range(_PASSES):  # each pass narrows [lo, hi] to one grid step
        grid = np.linspace(lo, hi, _GRID)
        rejected = log_wealth(y, grid, alpha, lam)[side][:, -1] >= level
        if side == 0:  # K⁺ falls as m rises: rejected below the bound
            if not rejected[0]:
                return lo
            i = int(np.argmin(rejected)) if not rejected.all() else _GRID - 1
            lo, hi = grid[max(i - 1, 0)], grid[i]
        else:  # K⁻ rises with m: rejected above the bound
            if not rejected[-1]:
                return hi
            i = int(np.argmax(rejected))
            lo, hi = grid[max(i - 1, 0)], grid[i]
    return lo if side == 0 else hi  # the conservative end of the last step


def confidence_sequence(values: Sequence[float], bounds: tuple[float, float], alpha: float = ALPHA) -> tuple[float, float]:
    """[lo, hi]: the means not rejected at any look so far. If the looks conflict (the set is empty, which happens
    with probability at most α), the last non-empty one is kept, so a verdict never comes undone."""
    a, b = bounds
    y = scaled(values, bounds)
    for n in range(len(y), 0, -1):
        lo, hi = _edge(y[:n], 0, alpha), _edge(y[:n], 1, alpha)
        if lo <= hi:
            return float(a + lo * (b - a)), float(a + hi * (b - a))
    return float(a), float(b)


def seeds_for_power(
    values: Sequence[float], bounds: tuple[float, float], threshold: float, power: float = 0.8, limit: int = 300
) -> int | None:
    """About how many seeds in all settle "mean = ``threshold``" with probability ``power``, if further seeds are
    drawn like the observed ``values`` (a bootstrap of 100 sequences, each resampled from the values).

    None with fewer than two values or with the mean on the threshold; ``limit`` when even that many would not do.
    """
    if len(values) < 2 or statistics.fmean(values) == threshold or not bounds[0] <= threshold <= bounds[1]:
        return None
    y = scaled(values, bounds)
    draws = np.random.default_rng(0).choice(y, size=(100, limit), replace=True)
    m = (threshold - bounds[0]) / (bounds[1] - bounds[0])
    for horizon in sorted({min(20, limit), min(60, limit), limit}):  # most claims settle early or never: look short first
        plus, minus = log_wealth(draws[:, :horizon], m)
        hit = np.maximum(plus, minus) >= math.log(2 / ALPHA)
        first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, limit + 1)
        need = int(np.quantile(first, power, method="higher"))
        if need <= horizon:
            return max(need, len(values))
    return limit
