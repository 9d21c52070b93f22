"""The headline's family-wise error over a whole simulated study: the real claim catalogue, ``next_round``'s
allocation of seeds, looks after every round, and every claim null at its threshold with the nastiest values of
its kind (two points at the ends of a bounded range; normal values for an unbounded one)."""

import dataclasses
import math

import numpy as np
import pytest

from mnist_vae.study import settle
from mnist_vae.study.claims import CLAIMS, SETTLED, Claim, evaluate_claims, metric

EPOCHS, FIRST, MAX_SEEDS, WORKERS = 50, 3, 20, 2


def _null_claims() -> tuple[Claim, ...]:
    """Each claim of the catalogue, reading a column of its own, with its configurations, direction, threshold and kind."""
    out = []
    for i, c in enumerate(CLAIMS):
        bounds = c.bounds(EPOCHS) if callable(c.bounds) else c.bounds
        if c.joint is not None and bounds is not None:  # a joint number in [-(E-1), E-1]: a paired difference of [0, E-1]
            bounds = (0.0, bounds[1])
        out.append(dataclasses.replace(c, metric=metric(f"k{i}"), joint=None, bounds=bounds, min_epochs=1))
    return tuple(out)


def _value(claim: Claim, rng: np.random.Generator) -> float:
    """One run's number, drawn so that the claim's mean is exactly at its threshold."""
    if claim.bounds is None:
        return float(rng.normal(claim.threshold if len(claim.configs) == 1 else 0.0, 1.0))
    a, b = claim.bounds  # type: ignore[misc]
    if len(claim.configs) == 2:  # A and B alike: the difference is 0 on average, and lies at the ends or in the middle
        return a if rng.random() < 0.5 else b
    p = (claim.threshold - a) / (b - a)
    return b if rng.random() < p else a


def _rows(claims: tuple[Claim, ...], config: str, seeds: list[int], rng: np.random.Generator) -> list[dict]:
    rows = []
    for s in seeds:
        row = {"config": config, "seed": s, "epochs": EPOCHS}
        row |= {f"k{i}": _value(c, rng) for i, c in enumerate(claims) if config in c.configs}
        rows.append(row)
    return rows


def one_study_counts(
    claims: tuple[Claim, ...], rng: np.random.Generator, max_seeds: int = MAX_SEEDS, rounds: int = 10**6
) -> tuple[int, int]:
    """The false verdicts at the end of one simulated study: counted family-wise (the headline), and per claim.

    ``max_seeds`` and ``rounds`` (a budget that stops the study after that many rounds) vary how it ends."""
    configs = list(dict.fromkeys(n for c in claims for n in c.configs))
    have = {n: list(range(FIRST)) for n in configs}
    rows = [r for n in configs for r in _rows(claims, n, have[n], rng)]
    for left in range(rounds, -1, -1):
        results = evaluate_claims(rows, claims, sequential=True)
        nxt, _ = settle.next_round(results, have, max_seeds, WORKERS)
        if not nxt or left == 0:
            return sum(r.get("holm") == "holds" for r in results), sum(r["verdict"] in SETTLED for r in results)
        for name, seeds in nxt.items():
            have[name] += seeds
            rows += _rows(claims, name, seeds, rng)
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_the_headline_keeps_a_family_wise_error_of_five_percent_over_a_whole_null_study():
    claims, rng, studies = _null_claims(), np.random.default_rng(2026), 100
    # some studies stop on a budget after 2 or 5 rounds, some have --max-seeds 8 and some 20: validity must not care
    false = [one_study_counts(claims, rng, int(rng.choice([8, 20])), int(rng.choice([2, 5, 10**6])))[0] for _ in range(studies)]
    share = float(np.mean([f > 0 for f in false]))
    assert share <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / studies), f"{share:.3f} of studies with a false family-wise verdict"
