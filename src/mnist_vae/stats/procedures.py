"""The procedure each kind of number gets: one call from a claim's per-seed values to its interval and p-value.

| kind | fixed seeds | seeds added while looking |
|---|---|---|
| bounded (a declared range [a, b]) | betting confidence sequence | betting confidence sequence |
| unbounded | Student t | anytime-valid t-mixture |

A bounded number needs no assumption about its shape, so the betting sequence (valid at every look,
hence also at one) serves both kinds of study. A paired difference of a measure in [a, b] lies in
[a − b, b − a].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from . import betting, sequential
from .intervals import Interval, finite, interval, too_few

FIXED = "Student t, fixed seeds"
SEQUENTIAL = "anytime-valid t (sequential)"
BOUNDED = "anytime-valid betting (bounded)"


@dataclass(frozen=True)
class Tested:
    """A claim's numbers after its procedure: the interval, the p-value of "mean = threshold" and the procedure's name."""

    interval: Interval
    p: float | None
    procedure: str


def procedure_name(bounded: bool, sequential_study: bool) -> str:
    """The name of the procedure a number of this kind gets (the report's "procedure" column)."""
    return BOUNDED if bounded else SEQUENTIAL if sequential_study else FIXED


def p_value(values: Sequence[float], mean: float, bounds: tuple[float, float] | None, sequential_study: bool) -> float | None:
    """The p-value of "the mean is ``mean``" by the kind's procedure (None below two values)."""
    vals = finite(values)
    if len(vals) < 2:
        return None
    if bounds is not None:
        return betting.p_value(vals, bounds, mean)
    return sequential.anytime_p(vals, mean) if sequential_study else sequential.fixed_p(vals, mean)


def interval_of(values: Sequence[float], bounds: tuple[float, float] | None, sequential_study: bool) -> Interval:
    """The interval of ``values`` (in seed order) by the kind's procedure; tied unbounded values give no finite interval."""
    vals = finite(values)
    if bounds is None:
        if sequential_study:
            return sequential.confidence_sequence(vals)
        iv = interval(vals)
        if len(vals) >= 2 and min(vals) == max(vals):  # ties say nothing about the spread: no interval of width zero
            iv = Interval(vals, iv.mean, iv.sd, -math.inf, math.inf)
        return iv
    if (few := too_few(vals)) is not None:
        return few
    lo, hi = betting.confidence_sequence(vals, bounds)
    plain = interval(vals)
    return Interval(vals, plain.mean, plain.sd, lo, hi)


def test(values: Sequence[float], threshold: float, bounds: tuple[float, float] | None, sequential_study: bool) -> Tested:
    """The interval of ``values`` (in seed order) and the p-value at ``threshold`` (None below two values)."""
    name = procedure_name(bounds is not None, sequential_study)
    return Tested(interval_of(values, bounds, sequential_study), p_value(values, threshold, bounds, sequential_study), name)


def seeds_to_settle(values: Sequence[float], threshold: float, bounds: tuple[float, float] | None, sequential_study: bool) -> int | None:
    """About how many seeds in all would give 80% power to settle the claim, if its values go on as observed."""
    vals = finite(values)
    if bounds is not None:
        return betting.seeds_for_power(vals, bounds, threshold)
    return sequential.seeds_for_power(interval(vals), threshold, sequential=sequential_study)
