"""The sequential study's verdicts keep their error rate under optional stopping; naive re-testing does not.

Each simulated study starts with 3 seeds, looks after every added seed up to 20, and stops at the
first verdict, as ``mnist-vae study --until-settled`` does. The true effect sits exactly at the
threshold, so every "supported" or "contradicted" is wrong.
"""

import math
import statistics

import numpy as np
import pytest

from mnist_vae.stats import betting, interval, verdict
from mnist_vae.stats.sequential import (
    G,
    anytime_p,
    confidence_sequence,
    cs_multiplier,
    fixed_p,
    holm,
    log_bayes_factor,
    log_bf_looks,
    seeds_for_power,
)
from mnist_vae.stats.tdist import t_quantile, t_sf

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
    # a verdict at some look from 3 seeds on: the Bayes factor at the threshold reached 1/α (the interval excludes it)
    rejected = np.max(log_bf_looks(data, 0.0)[:, FIRST - 1 :], axis=1) >= math.log(1 / ALPHA)
    sequential = float(np.mean(rejected))
    assert _false_verdicts(data[:200], confidence_sequence) == pytest.approx(np.mean(rejected[:200]))  # the interval agrees
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


# --- the t-mixture against numerical integration, ties, thresholds, and verdicts that stay ------------------------


def _t_density(t: np.ndarray, nu: int) -> np.ndarray:
    c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    return np.exp(c - (nu + 1) / 2 * np.log1p(t * t / nu))


@pytest.mark.parametrize("n", [2, 3, 5, 20])
def test_the_bayes_factor_has_mean_one_under_the_null(n):
    theta = np.linspace(-math.pi / 2, math.pi / 2, 400_001)[1:-1]  # t = tan θ covers the whole line
    t = np.tan(theta)
    bf = np.exp([log_bayes_factor(float(x), n) for x in t[::50]])  # the scalar formula, on a coarser grid
    bf_fine = np.interp(t, t[::50], bf)
    mean = np.trapezoid(bf_fine * _t_density(t, n - 1) / np.cos(theta) ** 2, theta)
    assert mean == pytest.approx(1.0, abs=2e-3)


def _log_bf_by_integration(x: np.ndarray, mu0: float, g: float = G) -> float:
    """log BF of "mean = mu0" from the data, integrating δ ~ N(0, g) and log σ numerically (right-Haar prior dσ/σ)."""
    d = x - mu0
    s = np.linspace(math.log(np.std(d) + 1e-12) - 9, math.log(np.std(d) + 1e-12) + 9, 1501)[:, None]  # log σ
    delta = np.linspace(-12 * math.sqrt(g), 12 * math.sqrt(g), 1501)[None, :]
    sigma = np.exp(s)
    n, s1, s2 = len(d), d.sum(), (d * d).sum()
    log_lik = -n * s - (s2 - 2 * delta * sigma * s1 + n * (delta * sigma) ** 2) / (2 * sigma**2)  # up to a constant
    log_prior = -0.5 * delta**2 / g - 0.5 * math.log(2 * math.pi * g)
    joint = log_lik + log_prior
    top = joint.max()
    alt = math.log(np.trapezoid(np.trapezoid(np.exp(joint - top), delta[0], axis=1), s[:, 0])) + top
    null = -n * s[:, 0] - s2 / (2 * sigma[:, 0] ** 2)
    null_top = null.max()
    return alt - (math.log(np.trapezoid(np.exp(null - null_top), s[:, 0])) + null_top)


@pytest.mark.parametrize("x", [[0.3, 1.2, 0.8], [2.0, 2.1, 1.7, 2.4, 1.9], [-0.5, 0.4, 1.1, 0.2, -0.1, 0.9, 0.3]])
def test_the_closed_form_matches_numerical_integration_over_effect_and_scale(x):
    x = np.asarray(x)
    for mu0 in (0.0, 0.5):
        assert log_bf_looks(x, mu0)[-1] == pytest.approx(_log_bf_by_integration(x, mu0), abs=1e-3)


def test_tied_values_give_the_finite_bound_and_never_a_zero_width_interval():
    assert log_bayes_factor(math.inf, 3) == pytest.approx(math.log(31.0)) and log_bayes_factor(math.inf, 2) == pytest.approx(
        0.5 * math.log(21)
    )
    assert anytime_p([16, 16, 16], 15.5) == pytest.approx(1 / 31)
    assert 1 / 31 < anytime_p([16, 16, 15.9], 15.5) < 0.05  # ties at n = 2 are finite evidence, not infinite
    rng = np.random.default_rng(5)
    assert min(anytime_p(rng.normal(0, 1, 3).tolist(), 10.0) for _ in range(50)) >= 1 / 31 - 1e-12  # no three values do better
    for tied in ([16.0, 16.0, 16.0], [0.1, 0.1, 0.1, 0.1]):
        iv = confidence_sequence(tied)
        assert iv.hi - iv.lo > 0
        lo, hi = betting.confidence_sequence(tied, (0.0, 16.0))
        assert hi - lo > 1.0
    assert betting.confidence_sequence([16.0] * 5, (0.0, 16.0))[1] == 16.0  # the range itself bounds it above


def test_a_claim_settled_at_n_stays_settled_at_every_later_n():
    values = [1, 1.01, 0.99] + [0, 0.1] * 4
    first = confidence_sequence(values[:3])
    assert verdict(first, "greater", 0.5) == "supported"
    for n in range(4, len(values) + 1):
        later = confidence_sequence(values[:n])
        assert verdict(later, "greater", 0.5) == "supported", n
        assert first.lo <= later.lo <= later.hi <= first.hi
    bounded = [0.95, 0.97, 0.96, 0.98, 0.97, 0.99, 0.96, 0.97, 0.98, 0.99, 0.97] + [0.1, 0.2] * 6
    settled = next(n for n in range(2, 12) if betting.confidence_sequence(bounded[:n], (0.0, 1.0))[0] > 0.5)
    for n in range(settled, len(bounded) + 1):
        assert betting.confidence_sequence(bounded[:n], (0.0, 1.0))[0] > 0.5, n
        assert betting.p_value(bounded[:n], (0.0, 1.0), 0.5) <= ALPHA


def test_verdicts_are_against_the_claims_threshold():
    near = [15.6, 15.7, 15.65]  # far above 0, barely above 15.5
    assert verdict(confidence_sequence(near), "greater", 0.0) == "supported"
    assert verdict(confidence_sequence(near), "greater", 15.5) == "inconclusive" and anytime_p(near, 15.5) > ALPHA
    assert anytime_p(near, 0.0) == pytest.approx(1 / 31, rel=0.01)  # about as low as three values can go
    low = [0.5] * 12  # every seed at 0.5 of [0, 1]: settled below 0.9, nowhere near 0
    lo, hi = betting.confidence_sequence(low, (0.0, 1.0))
    assert verdict(interval(low).__class__(tuple(low), 0.5, 0.0, lo, hi), "greater", 0.9) == "contradicted"
    assert betting.p_value(low, (0.0, 1.0), 0.9) <= ALPHA < betting.p_value(low, (0.0, 1.0), 0.5)


def test_the_multipliers_and_p_values_have_their_known_values():
    # n = 3, g = 10, α = 0.05 by hand: 31^(-1/2)·[(1 + c²/2)/(1 + c²/62)]^(3/2) = 20
    a = (20 * math.sqrt(31)) ** (2 / 3)
    assert cs_multiplier(3) == pytest.approx(math.sqrt(2 * (a - 1) / (1 - a / 31)), rel=1e-9)
    assert 13.0 < cs_multiplier(3) < 13.5 and 3.7 < cs_multiplier(20) < 3.9
    assert anytime_p([10.0, 10.5, 9.8]) == pytest.approx(math.exp(-log_bayes_factor(10.1 / (0.3606 / math.sqrt(3)), 3)), rel=1e-3)


# --- the betting sequence for bounded numbers: coverage under the nasty nulls of that kind ----------------------

BOUNDED_SIMS = 4000


def _bounded_null(kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, float]:
    """Values in [0, 1] and their true mean."""
    if kind == "two-point, mean 0.969":  # 16 of 16 units almost always, a collapse once in 32 seeds
        return (rng.random((BOUNDED_SIMS, n)) < 31 / 32).astype(float), 31 / 32
    if kind == "two-point, mean 0.5":
        return (rng.random((BOUNDED_SIMS, n)) < 0.5).astype(float), 0.5
    if kind == "uniform":
        return rng.random((BOUNDED_SIMS, n)), 0.5
    sigma = 1.0  # lognormal, capped at its 99th percentile and scaled into [0, 1]
    cap = math.exp(sigma * 2.3263478740408408)
    nd = statistics.NormalDist()
    mean = (math.exp(sigma**2 / 2) * nd.cdf((math.log(cap) - sigma**2) / sigma) + cap * (1 - nd.cdf(math.log(cap) / sigma))) / cap
    return np.minimum(rng.lognormal(0.0, sigma, (BOUNDED_SIMS, n)) / cap, 1.0), mean


@pytest.mark.parametrize("kind", ["two-point, mean 0.969", "two-point, mean 0.5", "uniform", "lognormal-shaped"])
def test_the_betting_sequence_covers_the_mean_under_bounded_nulls(kind):
    y, mean = _bounded_null(kind, np.random.default_rng(11), 20)
    plus, minus = betting.log_wealth(y, mean)
    missed = np.mean(np.maximum(plus, minus)[:, -1] >= math.log(2 / ALPHA))  # ever rejected the true mean, at any look
    assert missed <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / BOUNDED_SIMS), f"{kind}: {missed:.3f}"
    assert (y.min(), y.max()) >= (0.0, 0.0) and y.max() <= 1.0


def test_the_betting_sequence_settles_a_clear_effect_and_the_t_mixture_would_be_fooled_by_ties():
    assert betting.p_value([0.2] * 12, (0.0, 1.0), 0.6) <= ALPHA  # far from the threshold: settles
    # two-point values at the threshold's mean: the t-mixture on ties settles falsely, the betting sequence does not
    y, mean = _bounded_null("two-point, mean 0.969", np.random.default_rng(4), 3)
    t_false = np.mean([anytime_p(row.tolist(), mean) <= ALPHA for row in y[:500]])
    bet_false = np.mean([betting.p_value(row.tolist(), (0.0, 1.0), mean) <= ALPHA for row in y[:500]])
    assert t_false > 0.5 and bet_false == 0.0


def test_holm_with_groups_divides_by_the_groups_left():
    # two hypotheses of one claim cannot both be true: the first step divides by 2 groups, not 3 hypotheses
    assert holm([0.02, 0.3, 0.9], groups=[0, 0, 1]) == [True, False, False]
    assert holm([0.02, 0.3, 0.9]) == [False, False, False]
    assert holm([0.001, 0.02, 0.03], groups=[0, 1, 1]) == holm([0.001, 0.02, 0.03], groups=[0, 1, 2]) == [True, True, True]


# Computed by confseq 0.0.11 (built here with Boost and numpy < 2): max over looks of
# betting_mart(x, m, alpha=0.05, trunc_scale=0.75), and betting_cs(x, alpha=0.05, breaks=2000,
# running_intersection=True, trunc_scale=0.75) after the last value.
CONFSEQ = {
    "skewed": ([0.95, 0.97, 0.96, 0.98, 0.97, 0.99, 0.96, 0.97, 0.98, 0.99], {0.3: 9550.43076533, 0.5: 105.58135395038293, 0.9: 0.8949920340615353}, (0.609, 1.0)),
    "uniform": ([0.234, 0.295, 0.521, 0.433, 0.238, 0.373, 0.392, 0.264, 0.494, 0.245, 0.356, 0.407],
                {0.3: 1.7653675912978841, 0.5: 4.916189416743166, 0.9: 302532.01185398817}, (0.23, 0.568)),
    "two-point": ([1.0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1], {0.3: 427.37395486672744, 0.5: 19.242099285125732, 0.9: 0.6357060185185184}, (0.4975, 1.0)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFSEQ))
def test_the_betting_sequence_matches_confseq(name):
    x, marts, (lo, hi) = CONFSEQ[name]
    for m, mart in marts.items():
        plus, minus = betting.log_wealth(np.asarray(x), m)
        assert math.exp(max(plus[-1], minus[-1])) / 2 == pytest.approx(mart, rel=1e-9)  # max(θK⁺, (1−θ)K⁻), θ = 1/2
    ours = betting.confidence_sequence(x, (0.0, 1.0))
    assert ours[0] == pytest.approx(lo, abs=1e-3) and ours[1] == pytest.approx(hi, abs=1e-3)  # confseq's grid: 1/2000


def test_the_betting_evidence_is_a_running_maximum_and_its_intervals_nest():
    x = [0.9, 0.8, 0.95, 0.2, 0.1, 0.15, 0.3, 0.1, 0.2, 0.25]  # evidence against 0.5 rises, then falls back
    plus, minus = betting.log_wealth(np.asarray(x), 0.5)
    assert np.all(np.diff(plus) >= 0) and np.all(np.diff(minus) >= 0)
    bounds = [betting.confidence_sequence(x[:n], (0.0, 1.0)) for n in range(1, len(x) + 1)]
    assert all(a[0] <= b[0] and b[1] <= a[1] for a, b in zip(bounds, bounds[1:]))
