"""Intervals over training seeds: Student-t confidence intervals, paired differences and their verdicts.

The unit of replication is the training seed. A comparison of configurations A and B uses the
per-seed differences d_s = A_s − B_s (same seed: same initial weights, data order and noise), so
the seed-to-seed spread that A and B share cancels.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .tdist import t975

Direction = Literal["less", "greater", "differs"]


@dataclass(frozen=True)
class Interval:
    """Mean of ``values`` with its 95% t-interval [lo, hi]; n = 1 gives an unbounded interval."""

    values: tuple[float, ...]
    mean: float
    sd: float
    lo: float
    hi: float

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    def text(self, fmt: str = "{:.2f}") -> str:
        """``mean ± half-width`` (just the mean for one seed)."""
        if self.n < 2 or not math.isfinite(self.half):
            return fmt.format(self.mean)
        return f"{fmt.format(self.mean)} ± {fmt.format(self.half)}"


def finite(values: Sequence[float | None]) -> tuple[float, ...]:
    """The values that are numbers (None and NaN dropped), in order."""
    return tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))


def too_few(vals: tuple[float, ...]) -> Interval | None:
    """The interval of no value (all NaN) or of one (unbounded); None when there are two or more."""
    if not vals:
        return Interval((), math.nan, math.nan, math.nan, math.nan)
    if len(vals) < 2:
        return Interval(vals, vals[0], math.nan, -math.inf, math.inf)
    return None


def interval(values: Sequence[float]) -> Interval:
    """The mean and 95% Student-t confidence interval of ``values`` (NaNs are dropped)."""
    vals = finite(values)
    if (few := too_few(vals)) is not None:
        return few
    mean, sd = statistics.fmean(vals), statistics.stdev(vals)
    half = t975(len(vals) - 1) * sd / math.sqrt(len(vals))
    return Interval(vals, mean, sd, mean - half, mean + half)


def paired(a: dict[int, float], b: dict[int, float]) -> Interval:
    """The interval of the per-seed differences a_s − b_s over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    return interval([a[s] - b[s] for s in seeds])


def verdict(diff: Interval, direction: Direction, threshold: float = 0.0) -> str:
    """supported / contradicted / inconclusive for the claim "diff is ``direction`` than ``threshold``".

    Supported: the 95% interval lies entirely on the claimed side; contradicted: entirely on the
    other side; inconclusive: it contains the threshold (or there is only one seed).
    """
    if diff.n == 0:
        return "not measured"
    if diff.n < 2:
        return "inconclusive: one seed"
    lo, hi = diff.lo - threshold, diff.hi - threshold
    if direction == "differs":
        return "supported" if lo > 0 or hi < 0 else "inconclusive"
    below, above = hi < 0, lo > 0
    if direction == "less":
        return "supported" if below else "contradicted" if above else "inconclusive"
    return "supported" if above else "contradicted" if below else "inconclusive"


def equivalence(diff: Interval, bound: float) -> str:
    """Whether a difference is negligible: "within" ±``bound`` (the whole 95% interval inside it),
    "exceeds" it (the whole interval outside), or "inconclusive" (the interval straddles a bound)."""
    if diff.n < 2:
        return "inconclusive: one seed" if diff.n else "not measured"
    if -bound < diff.lo and diff.hi < bound:
        return "within"
    return "exceeds" if diff.lo >= bound or diff.hi <= -bound else "inconclusive"
