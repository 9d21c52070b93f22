"""The sequential study's verdicts keep their error rate under optional stopping; naive re-testing does not.

Each simulated study starts with 3 seeds, looks after every added seed up to 20, and stops at the
first verdict, as ``mnist-vae study --until-settled`` does. The true effect sits exactly at the
threshold, so every "supported" or "contradicted" is wrong.
"""

import math

import numpy as np
import pytest

from mnist_vae.stats import interval, verdict
from mnist_vae.stats.sequential import (
    anytime_p,
    confidence_sequence,
    cs_multiplier,
    fixed_p,
    holm,
    log_bayes_factor,
    seeds_for_power,
    t_quantile,
    t_sf,
)

SIMS, FIRST, MAX_SEEDS, ALPHA = 2000, 3, 20, 0.05
MC_ALLOWANCE = 2 * math.sqrt(ALPHA * (1 - ALPHA) / SIMS)  # two Monte-Carlo standard errors at 5%


def _draws(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0.0, 1.0, (SIMS, MAX_SEEDS))
    return rng.standard_t(3, (SIMS, MAX_SEEDS))  # heavy tails: Student t with 3 degrees of freedom


def _false_verdicts(data: np.ndarray, make_interval) -> float:
    wrong = 0
    for row in data:
        for n in range(FIRST, MAX_SEEDS + 1):
            v = verdict(make_interval(row[:n].tolist()), "less", 0.0)
            if v in ("supported", "contradicted"):
                wrong += 1
                break
    return wrong / len(data)


@pytest.mark.parametrize("kind", ["normal", "heavy-tailed"])
def test_sequential_verdicts_keep_their_error_rate_and_naive_retesting_does_not(kind):
    data = _draws(kind, np.random.default_rng(20261206 if kind == "normal" else 7))
    sequential = _false_verdicts(data, confidence_sequence)
    naive = _false_verdicts(data, interval)
    assert sequential <= ALPHA + MC_ALLOWANCE, f"{kind}: {sequential:.3f} false verdicts"
    # The harness can fail: re-testing the fixed-n interval after every seed inflates the error rate.
    assert naive > ALPHA + 3 * MC_ALLOWANCE and naive > 2 * sequential, f"{kind}: naive {naive:.3f}, sequential {sequential:.3f}"


def test_one_fixed_look_has_its_stated_error_rate():
    data = np.random.default_rng(1).normal(0.0, 1.0, (SIMS, 5))
    wrong = np.mean([verdict(interval(row.tolist()), "less", 0.0) != "inconclusive" for row in data])
    assert abs(wrong - ALPHA) <= 1.5 * MC_ALLOWANCE


def test_the_confidence_sequence_inverts_the_bayes_factor():
    for n in (3, 5, 8, 20):
        c = cs_multiplier(n)
        assert math.isfinite(c) and log_bayes_factor(c, n) == pytest.approx(math.log(1 / ALPHA), abs=1e-9)
        assert c > t_quantile(0.975, n - 1)  # wider than the fixed-n interval: the price of looking at will
    assert cs_multiplier(2) == math.inf  # two seeds can never settle anything


def test_a_large_effect_settles_and_the_verdict_stays():
    values = [10.0, 10.5, 9.8]  # a large effect with a small spread: settles at three seeds
    iv = confidence_sequence(values)
    assert verdict(iv, "greater", 0.0) == "supported" and iv.lo > 0
    assert anytime_p(values) < ALPHA < fixed_p([1.0, -1.0, 0.5])
    # the running intersection keeps the bound of an earlier look
    later = confidence_sequence([*values, 9.0, 12.0])
    assert later.lo >= iv.lo


def test_t_distribution_against_known_values():
    assert t_sf(2.0, 5) == pytest.approx(0.050969739, abs=1e-8)  # R: pt(2, 5, lower.tail = FALSE)
    assert t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert t_quantile(0.8, 10) == pytest.approx(0.8790578, abs=1e-6)


def test_seeds_for_power_is_for_80_percent_power():
    iv = interval([0.6 - 0.854, 0.6, 0.6 + 0.854])  # mean 0.6, sd 0.854 (issue 20's example)
    assert seeds_for_power(iv) == 18  # the old "seeds needed" said 11, a coin flip
    assert seeds_for_power(iv, sequential=True) > 18
    # simulated power of the fixed-n test at that many seeds is about 80%
    rng = np.random.default_rng(3)
    n = seeds_for_power(iv)
    hits = np.mean([verdict(interval(rng.normal(0.6, 0.854, n).tolist()), "greater", 0.0) == "supported" for _ in range(2000)])
    assert 0.75 <= hits <= 0.86


def test_holm():
    assert holm([0.01, 0.04, 0.03, 0.2]) == [True, False, False, False]
    assert holm([0.001, 0.01, 0.02]) == [True, True, True]
    assert holm([]) == []
