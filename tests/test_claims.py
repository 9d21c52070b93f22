"""Intervals over seeds, verdicts and each claim's measurement, on hand-made numbers."""

from __future__ import annotations

import math

import pytest

from mnist_vae.stats import interval, paired, t975, verdict
from mnist_vae.stats.sequential import seeds_for_power
from mnist_vae.study.claims import CLAIMS, convergence_gap, epochs_to, evaluate_claims, roughness, stabilised_epoch


def test_t_quantiles_and_interval_match_known_values():
    assert t975(1) == pytest.approx(12.7062, abs=1e-4) and t975(10) == pytest.approx(2.2281, abs=1e-4)
    assert t975(60) == pytest.approx(2.0003, abs=2e-4) and t975(120) == pytest.approx(1.9799, abs=2e-4)
    iv = interval([1, 2, 3, 4, 5])  # mean 3, sd sqrt(2.5), t(4) = 2.7764
    assert iv.mean == 3 and iv.sd == pytest.approx(math.sqrt(2.5))
    assert (iv.lo, iv.hi) == pytest.approx((3 - 1.96324, 3 + 1.96324), abs=1e-4)
    one = interval([7.0])
    assert one.n == 1 and one.lo == -math.inf and one.text() == "7.00"


def test_paired_verdicts_clear_win_clear_loss_and_overlap():
    base = {0: 100.0, 1: 104.0, 2: 98.0}
    win = paired({0: 99.0, 1: 103.2, 2: 96.9}, base)  # 1 nat better on every seed, despite 6 nats of seed spread
    assert win.mean == pytest.approx(-0.9667, abs=1e-3) and win.hi < 0
    assert verdict(win, "less") == "supported" and verdict(win, "greater") == "contradicted" and verdict(win, "differs") == "supported"
    loss = paired({0: 102.0, 1: 105.5, 2: 100.1}, base)
    assert verdict(loss, "less") == "contradicted" and verdict(loss, "greater") == "supported"
    overlap = paired({0: 101.0, 1: 103.0, 2: 98.5}, base)
    assert overlap.lo < 0 < overlap.hi and verdict(overlap, "less") == "inconclusive" == verdict(overlap, "differs")
    assert verdict(paired({0: 1.0}, {0: 0.0}), "greater") == "inconclusive: one seed"
    assert verdict(paired({}, {}), "less") == "not measured"


def test_seeds_for_power_from_the_observed_spread():
    d = interval([0.8, 1.9, 1.2])  # mean 1.3, sd 0.557: 3 seeds do not exclude 0; (t(3) 3.18 + t_0.8(3) 0.98) · 0.557 / √4 < 1.3
    assert verdict(d, "greater") == "inconclusive" and seeds_for_power(d) == 4
    assert seeds_for_power(interval([1.0, 1.0])) is None  # no spread: cannot tell
    assert seeds_for_power(interval([-1.0, 1.0])) is None  # mean on the threshold
    assert verdict(interval([0.2, 0.3, 0.25]), "greater", threshold=0.1) == "supported"


def test_measurements_on_hand_made_histories():
    assert stabilised_epoch([200, 150, 120, 105, 101, 100.5, 100.0]) == 5  # 101 is within 2% of 100
    assert roughness([9, 9, 9, 9, 9, 1, 2, 3, 4]) == 0.0  # a straight line after epoch 5
    assert roughness([0] * 5 + [1, 3, 1, 3]) == pytest.approx(4.0)
    assert epochs_to([130, 105, 101, 99], 101.5) == 3 and math.isnan(epochs_to([130, 120], 100))
    fast, slow = {"test_loss_history": [130.0, 105.0, 101.0, 99.0]}, {"test_loss_history": [150.0, 120.0, 110.0, 100.0]}
    assert convergence_gap(fast, slow) == 3 - 4  # level: 1% above the worse final loss, 101


def _rows(config, seeds=3, **columns):
    rows = []
    for s in range(seeds):
        row = {
            "config": config,
            "seed": s,
            "recon_accuracy": 0.95,
            "blank_rate": 0.05,
            "recon_mu": 100.0,
            "entropy": 0.98,
            "kl": 15.0,
            "nll": 110.0,
            "frechet": 100.0,
            "probe_accuracy": 0.9,
            "coverage": 10,
            "active_units": 16,
            "midpoint_readable": 0.8,
            "epochs": 50,
            "test_recon_history": [200.0] + [100.0 + 5.0 / (e + 1) for e in range(1, 50)],
            "test_kl_history": [5.0 + e * 0.2 for e in range(50)],
            "test_loss_history": [300.0 - e for e in range(50)],
            "train_loss_history": [300.0 - e for e in range(50)],
        }
        row.update({k: v[s] for k, v in columns.items()})  # one value per seed
        rows.append(row)
    return rows


def _claim(results, config, start):
    return next(c for c in results if c["config"] == config and c["claim"].startswith(start))


def test_claims_on_a_hand_made_table():
    rows = (
        _rows("baseline")
        + _rows("dropout", nll=[111.0, 111.4, 111.2], blank_rate=[0.05, 0.05, 0.05], recon_accuracy=[0.8, 0.95, 0.9])
        + _rows("deeper-decoder", recon_mu=[98.0, 99.0, 98.5], kl=[15.0, 16.0, 14.0])
        + _rows("optimized", recon_accuracy=[0.97, 0.96, 0.98], coverage=[10, 10, 10])
    )
    res = evaluate_claims(rows)
    assert len(res) == len(CLAIMS)
    assert _claim(res, "baseline", "KL divergence increased")["verdict"] == "inconclusive"  # three identical seeds: ties, no spread
    assert _claim(res, "reflections", "excessive dropout")["verdict"] == "supported"  # NLL +1.0..1.4 on every seed
    assert _claim(res, "deeper-decoder", "reconstructions became sharper")["verdict"] == "supported"
    assert _claim(res, "deeper-decoder", "KL divergence slightly higher")["verdict"] == "inconclusive"
    assert _claim(res, "dropout", "generated images showed")["verdict"] == "inconclusive"  # no difference at all
    # Bounded measures get the betting sequence: three tied seeds cannot rule out a rare seed at the other end of the range.
    for config, start in [("baseline", "reconstruction loss decreased"), ("baseline", "reconstructions were clear"),
                          ("optimized", "generated samples covered")]:  # fmt: skip
        c = _claim(res, config, start)
        assert c["verdict"] == "inconclusive" and c["procedure"].startswith("anytime-valid betting"), (start, c["verdict"])
        assert c["effect"]["lo"] < c["effect"]["mean"] <= c["effect"]["hi"] and c["seeds_for_power"] > 3
    assert _claim(res, "optimized", "reconstructions were consistent")["text"] == "0.970 [0.229, 1.000] vs 0.900"
    missing = _claim(res, "reflections", "the LSTM encoder improved")
    assert missing["verdict"] == "not measured" and "dense-encoder" in missing["why"] and missing["missing"] == ["dense-encoder"]
    assert _claim(res, "lstm-plus", "beats the standard")["verdict"] == "not measured"


def test_a_bounded_claim_settles_with_enough_seeds_and_its_interval_respects_the_range():
    res = evaluate_claims(_rows("baseline", seeds=12))  # stabilised at epoch 3 in every seed, against 20.5 of [1, 50]
    c = _claim(res, "baseline", "reconstruction loss decreased")
    assert c["verdict"] == "supported" and c["bounds"] == [1.0, 50.0] and 1.0 <= c["effect"]["lo"] < 3.0 < c["effect"]["hi"] < 20.5
    assert _claim(evaluate_claims(_rows("baseline", seeds=10)), "baseline", "reconstruction loss decreased")["verdict"] == "inconclusive"


def test_a_paired_bounded_claim_uses_the_range_of_the_difference():
    rows = _rows("optimized", entropy=[0.9, 0.95, 0.92]) + _rows("mlp-vae", entropy=[0.5, 0.45, 0.55])
    c = next(c for c in evaluate_claims(rows) if c["configs"] == ["optimized", "mlp-vae"] and "entropy" in c["measure"])
    assert c["bounds"] == [-1.0, 1.0] and -1.0 <= c["effect"]["lo"] < c["effect"]["hi"] <= 1.0


def test_variant_effects_pair_a_variant_with_its_base_by_seed():
    from mnist_vae.study.report import variant_effects

    rows = [{"config": "optimized", "seed": s, "nll": 100.0 + s, "elbo": 107.0 + s} for s in range(4)]
    rows += [
        {"config": "optimized[precision=bf16]", "seed": s, "nll": 100.1 + s + (0.1 if s % 2 else -0.1), "elbo": 109.0 + s} for s in range(4)
    ]
    nll, elbo = variant_effects(rows)
    assert (nll["variant"], nll["base"], nll["metric"], nll["n"]) == ("optimized[precision=bf16]", "optimized", "NLL", 4)
    assert nll["mean"] == pytest.approx(0.1) and nll["differs"] == "inconclusive" and nll["negligible"] == "within"
    assert elbo["mean"] == pytest.approx(2.0) and elbo["differs"] == "supported" and elbo["negligible"] == "exceeds"


def test_a_claim_that_names_an_epoch_is_not_measured_on_short_runs():
    short = [{**r, "epochs": 4, "test_recon_history": r["test_recon_history"][:4], "test_kl_history": r["test_kl_history"][:4]}
             for r in _rows("baseline")]  # fmt: skip
    res = evaluate_claims(short)
    stabilised = _claim(res, "baseline", "reconstruction loss decreased")
    assert stabilised["verdict"] == "not measured" and "at least 50 epochs" in stabilised["why"] and "these have 4" in stabilised["why"]
    assert _claim(res, "baseline", "KL divergence increased")["verdict"] == "not measured"
    assert _claim(res, "baseline", "reconstructions were clear")["verdict"] != "not measured"  # not about epochs


def test_sequential_verdicts_and_holm():
    rows = (
        _rows("baseline")
        + _rows("dropout", nll=[111.0, 111.4, 111.2])
        + _rows("optimized")
        + _rows("no-kl", blank_rate=[0.3, 0.4, 0.35], midpoint_readable=[0.5, 0.55, 0.45])
    )
    fixed = {c["claim"]: c for c in evaluate_claims(rows)}
    seq = {c["claim"]: c for c in evaluate_claims(rows, sequential=True)}
    dropout = "excessive dropout reduced output quality"
    assert fixed[dropout]["verdict"] == "supported" and fixed[dropout]["procedure"].startswith("Student t")
    # three seeds of a 1.2-nat effect with a 0.2-nat spread: the anytime-valid interval is wider and does not settle it
    assert seq[dropout]["verdict"] == "inconclusive" and seq[dropout]["procedure"].startswith("anytime-valid")
    assert seq[dropout]["effect"]["lo"] < fixed[dropout]["effect"]["lo"]
    assert fixed[dropout]["holm"] in ("holds", "not at family-wise 5%")
    kl = fixed["KL divergence helped maintain latent space regularity"]
    assert kl["effect"]["mean"] == pytest.approx(0.3) and kl["procedure"].startswith("anytime-valid betting")  # 0.95 readable vs 0.65


def test_negligible_is_a_verdict_and_counts_family_wise():
    from mnist_vae.study.claim_table import verdict_text

    same = [0.97, 0.968, 0.972, 0.971, 0.969, 0.97]
    rows = _rows("optimized", seeds=6, nll=[100.0, 101.0, 99.5, 100.2, 100.4, 99.8]) + _rows(
        "dense-encoder", seeds=6, nll=[100.1, 101.05, 99.45, 100.3, 100.35, 99.9], probe_accuracy=same
    )
    res = evaluate_claims(rows, sequential=False)
    as_good = _claim(res, "reflections", "the LSTM encoder's latent code is as good")  # NLL differences of about 0.05 nats
    assert as_good["verdict"] == "negligible" and as_good["margin"] == 1.0 and as_good["p_negligible"] <= 0.05
    assert -1.0 < as_good["effect"]["lo"] < as_good["effect"]["hi"] < 1.0 and "negligible within ±1.00" in as_good["text"]
    assert as_good["holm"] in ("holds", "not at family-wise 5%")
    far = evaluate_claims(_rows("optimized", seeds=6, nll=[115.0, 116.0, 114.0, 115.5, 115.2, 114.8]) + _rows("dense-encoder", seeds=6))
    assert _claim(far, "reflections", "the LSTM encoder's latent code is as good")["verdict"] == "contradicted"
    tied = evaluate_claims(_rows("optimized", seeds=6) + _rows("dense-encoder", seeds=6))  # every NLL difference exactly 0
    tied_claim = _claim(tied, "reflections", "the LSTM encoder's latent code is as good")
    assert tied_claim["verdict"] == "inconclusive" and tied_claim["effect"]["lo"] == -math.inf  # ties: no width-zero interval
    text = verdict_text({"verdict": "inconclusive", "seeds_for_power": 300, "beyond_max_seeds": 20})
    assert "would need about 300 seeds" in text and "drew no more seeds" in text


def test_every_margin_is_fixed_with_its_reason():
    with_margin = [c for c in CLAIMS if c.margin is not None]
    assert len(with_margin) >= 5 and all(c.margin > 0 and len(c.margin_why) > 20 for c in with_margin)
    with pytest.raises(ValueError, match="margin"):
        CLAIMS[0].__class__("g", "t", "m", "less", ("a",), metric=lambda r: 0.0, margin=1.0)


def test_a_verdict_settled_per_claim_needs_holm_to_hold_family_wise():
    rows = _rows("baseline") + _rows("dropout", nll=[111.0, 111.4, 111.2]) + _rows("deeper-decoder", recon_mu=[98.0, 99.0, 98.5])
    res = evaluate_claims(rows)  # fixed seeds: Student t p-values
    tested = [c for c in res if c["p"] is not None]
    between = [c for c in tested if c["verdict"] == "supported" and 0.05 / len(tested) < c["p"] <= 0.05]
    assert between, [(c["claim"], c["p"]) for c in tested]
    assert all(c["holm"] == "not at family-wise 5%" for c in between)
