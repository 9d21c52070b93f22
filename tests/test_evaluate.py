"""The importance-weighted NLL estimator, active units, the latent probe and the ELBO report."""

import math
from types import SimpleNamespace

import pytest
import torch

from mnist_vae.evaluation import likelihood
from mnist_vae.evaluation.elbo import elbo_report
from mnist_vae.evaluation.latent import active_units, latent_probe
from mnist_vae.evaluation.likelihood import bernoulli_log_likelihood, decoder_rate, importance_nll, iw_log_likelihood
from mnist_vae.losses import bce_per_image, elbo
from mnist_vae.models import VAE
from mnist_vae.presets import get_config


class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s² I): log p(x) = log N(x; b, WWᵀ + s² I) exactly."""

    def __init__(self, d_z=2, d_x=3, s=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d_x, d_z, generator=g, dtype=torch.float64)
        self.b = torch.randn(d_x, generator=g, dtype=torch.float64)
        self.s2 = s * s

    def sample_x(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.W.shape[1], generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + math.sqrt(self.s2) * torch.randn(n, self.W.shape[0], generator=g, dtype=torch.float64)

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        prec = torch.eye(self.W.shape[1], dtype=torch.float64) + self.W.T @ self.W / self.s2
        cov = torch.linalg.inv(prec)
        mean = (x - self.b) @ self.W @ cov / self.s2  # cov is symmetric
        return mean, cov

    def log_px_given_z(self, z, x):  # z [B, S, D], x [B, X] -> [B, S]
        mean = z.double() @ self.W.T + self.b
        return (-0.5 * ((x[:, None, :] - mean) ** 2 / self.s2 + math.log(2 * math.pi * self.s2))).sum(-1)

    def elbo(self, x, m, var):
        """Exact ELBO for q = N(m, diag var)."""
        resid = x - m @ self.W.T - self.b
        trace = (self.W**2 * var[:, None, :]).sum((1, 2))
        exp_ll = -0.5 * x.shape[1] * math.log(2 * math.pi * self.s2) - ((resid**2).sum(1) + trace) / (2 * self.s2)
        kl = 0.5 * (var + m**2 - 1 - var.log()).sum(1)
        return exp_ll - kl


def _diag_posterior_model():
    # With one latent dimension the exact posterior is a diagonal Gaussian, so q can be exact.
    return LinearGaussian(d_z=1, d_x=3)


def test_exact_posterior_gives_exact_log_likelihood_for_any_k_and_chunk():
    lg = _diag_posterior_model()
    x = lg.sample_x(50)
    mean, cov = lg.posterior(x)
    logvar = torch.full_like(mean, math.log(cov[0, 0].item()))
    g = torch.Generator().manual_seed(0)
    for k, chunk in ((1, 1), (7, 3), (100, 100)):
        est = iw_log_likelihood(mean.float(), logvar.float(), x, lg.log_px_given_z, k, chunk, g)
        assert torch.allclose(est, lg.log_px(x), atol=2e-4), (k, chunk)


def test_k1_agrees_with_elbo_in_expectation():
    lg = LinearGaussian(d_z=2, d_x=3)
    x = lg.sample_x(40)
    mean, _ = lg.posterior(x)
    m = (mean + 0.3).float()  # a deliberately imperfect q
    logvar = torch.full_like(m, -1.0)
    reps = 2000
    g = torch.Generator().manual_seed(3)
    draws = torch.stack([iw_log_likelihood(m, logvar, x, lg.log_px_given_z, 1, 1, g) for _ in range(reps)])
    exact_elbo = lg.elbo(x, m.double(), logvar.double().exp())
    se = draws.std(0) / math.sqrt(reps)
    assert ((draws.mean(0) - exact_elbo).abs() < 4 * se + 1e-3).all()
    assert (exact_elbo < lg.log_px(x)).all()


def test_estimate_rises_with_k_on_average_toward_log_px():
    lg = LinearGaussian(d_z=2, d_x=3)
    x = lg.sample_x(200)
    mean, _ = lg.posterior(x)
    m = (mean + 0.3).float()
    logvar = torch.full_like(m, -1.0)
    g = torch.Generator().manual_seed(4)
    means = [iw_log_likelihood(m, logvar, x, lg.log_px_given_z, k, 64, g).mean().item() for k in (1, 4, 32, 512)]
    assert all(a <= b for a, b in zip(means, means[1:])), means
    exact = lg.log_px(x).mean().item()
    assert means[-1] <= exact + 0.01 and exact - means[-1] < 0.1 * (exact - means[0])


def _tiny_vae():
    torch.manual_seed(0)
    return VAE(get_config("baseline").override(["latent_dim=4"]).model).eval()


def test_the_decoder_is_timed_for_a_part_of_a_small_job_only(monkeypatch):
    ticks = iter(range(10**6))
    monkeypatch.setattr(likelihood, "time", SimpleNamespace(perf_counter=lambda: next(ticks) / 16))  # a pass takes 1/16 s
    model = VAE(get_config("baseline").model)
    # 100 codes at 10 codes per 1/16 s take 0.625 s; a twentieth of it is less than one pass: one timed pass.
    assert decoder_rate(model, chunk=10, seconds=0.5, codes=100) == 160.0 and next(ticks) == 2
    ticks = iter(range(10**6))
    assert decoder_rate(model, chunk=10, seconds=0.5) == 160.0 and next(ticks) == 1 + 8  # 0.5 s of passes
    ticks = iter(range(10**6))
    decoder_rate(model, chunk=10, seconds=0.5, codes=10**6)  # a twentieth of 6,250 s is more than 0.5 s
    assert next(ticks) == 1 + 8


def test_bernoulli_likelihood_is_minus_bce():
    model = _tiny_vae()
    x = torch.rand(3, 28, 28)
    z = torch.randn(3, 2, 4)
    ll = bernoulli_log_likelihood(model)(z, x)
    for s in range(2):
        ref = -bce_per_image(model.decode(z[:, s]), x)
        assert torch.allclose(ll[:, s], ref, atol=1e-3)


def test_importance_nll_k1_matches_elbo_and_is_seeded():
    model = _tiny_vae()
    x = (torch.rand(300, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    a = importance_nll(model, x, k=1, chunk=100, seed=5)
    b = importance_nll(model, x, k=1, chunk=100, seed=5)
    assert a["nll"] == b["nll"]
    loss = elbo(model, x, generator=torch.Generator().manual_seed(9))["loss"]
    assert abs(a["nll"] - loss) < 3 * a["stderr"]
    k20 = importance_nll(model, x, k=20, chunk=50, seed=5)
    assert k20["nll"] <= a["nll"] + 1e-6 and k20["k"] == 20 and k20["n_images"] == 300


def test_elbo_report_parts_add_up():
    model = _tiny_vae()
    x = torch.rand(50, 28, 28)
    r = elbo_report(model, x)
    assert r["elbo"] == pytest.approx(r["recon"] + r["kl"])
    assert len(r["kl_per_dim"]) == 4 and sum(r["kl_per_dim"]) == pytest.approx(r["kl"], rel=1e-4)
    assert r["recon_mu"] > 0


def test_active_units_counts_dimensions_with_varying_means():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(1000, 4, generator=g) * torch.tensor([1.0, 0.5, 0.05, 0.0])
    n, var = active_units(mu)
    assert n == 2 and var[2] < 0.01 and var[3] == 0.0


def test_latent_probe_separable_and_random():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(60)
    centers = torch.randn(10, 5, generator=g) * 5
    mu = centers[y] + 0.1 * torch.randn(600, 5, generator=g)
    assert latent_probe(mu[:400], y[:400], mu[400:], y[400:]) == 1.0
    noise = torch.randn(600, 5, generator=g)
    assert latent_probe(noise[:400], y[:400], noise[400:], y[400:]) < 0.3


def test_eval_json_reads_back_with_its_keys_in_order(tmp_path):
    """EvalResult is eval.json typed: a file of today's keys (a screen's, without the sample measurements, and one
    with a key another version wrote) reads back and writes the same keys, in the same order."""
    import json

    from mnist_vae.evaluation.result import EvalResult

    full = {
        "run": "runs/x", "config": "optimized", "epoch": 3, "dataset": {"name": "embedded"}, "binarized": False, "binarize": "none",
        "n_test": 100, "device": "cpu", "elbo": 101.5, "recon": 80.0, "kl": 21.5, "recon_mu": 79.0, "kl_per_dim": [1.0, 2.0],
        "iwae": {"nll": 99.0, "stderr": 0.5, "k": 2, "seed": 0, "precision": "fp32", "seconds": 1.0}, "active_units": 2,
        "mu_variance": [0.5, 0.25], "parameters": 1234, "probe_accuracy": 0.9, "samples": {"n": 20, "coverage": 9},
        "recon_accuracy": 0.8, "midpoint_readable": 0.7, "classifier_accuracy": 0.99, "eval_seconds": 4.2,
    }  # fmt: skip
    screen = {
        k: v
        for k, v in full.items()
        if k not in ("probe_accuracy", "samples", "recon_accuracy", "midpoint_readable", "classifier_accuracy")
    }
    screen = {**{k: v for k, v in screen.items() if k != "eval_seconds"}, "screen": True, "eval_seconds": 1.0}
    (tmp_path / "again").mkdir()
    for d in (full, screen, {**full, "from_a_newer_version": [1]}):
        (tmp_path / "eval.json").write_text(json.dumps(d))
        ev = EvalResult.read(tmp_path)
        assert ev is not None and list(ev.to_dict().items()) == list(d.items())
        ev.write(tmp_path / "again")
        assert json.loads((tmp_path / "again" / "eval.json").read_text()) == d
    assert EvalResult.read(tmp_path / "nowhere") is None
    (tmp_path / "eval.json").write_text(json.dumps({"run": "runs/x"}))  # not an evaluation
    assert EvalResult.read(tmp_path) is None
