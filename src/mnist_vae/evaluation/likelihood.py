"""The importance-weighted estimate of log p(x) (Burda et al., 2016), in float64 and in chunks of latent codes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..config import EvalConfig
from ..models import VAE
from .elbo import encode_all

LOG_2PI = math.log(2 * math.pi)
#: Latent codes decoded per call. Small batches keep the decoder's activations in cache on a CPU.
DEFAULT_CHUNK = EvalConfig.chunk
#: (z [B, S, D], x [B, ...]) -> log p(x|z) [B, S]; pluggable so the estimator can be tested on
#: a model whose likelihood is known exactly.
LogLikelihood = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def iw_log_likelihood(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    x: torch.Tensor,
    log_px_given_z: LogLikelihood,
    k: int,
    samples_per_chunk: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) for a batch (Burda et al., 2016): float64 [B].

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K, z_k ~ q(z|x) =
    N(μ, diag σ²). The K samples are drawn ``samples_per_chunk`` at a time and folded into a
    running float64 log-sum-exp, so memory does not grow with K.
    """
    if k < 1 or samples_per_chunk < 1:
        raise ValueError(f"k and samples_per_chunk must be >= 1, got {k}, {samples_per_chunk}")
    mu, logvar = mu.float(), logvar.float()
    std = torch.exp(0.5 * logvar)
    acc = torch.full((len(mu),), -math.inf, dtype=torch.float64, device=mu.device)
    done = 0
    while done < k:
        s = min(samples_per_chunk, k - done)
        eps = torch.randn((len(mu), s, mu.shape[1]), generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu[:, None] + std[:, None] * eps  # [B, s, D]
        log_q = -0.5 * (eps**2 + logvar[:, None] + LOG_2PI).sum(-1)  # (z-μ)²/σ² = ε², exactly
        log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
        log_w = log_px_given_z(z, x).double() + (log_pz - log_q).double()
        acc = torch.logaddexp(acc, torch.logsumexp(log_w, dim=1))
        done += s
    return acc - math.log(k)


def bernoulli_log_likelihood(model: VAE, dtype: torch.dtype | None = None) -> LogLikelihood:
    """log p(x|z) of the VAE's Bernoulli decoder: −BCE with logits, summed over pixels; [B, S].

    ``dtype`` is the dtype of the decoder's weights when they are not fp32 (z is cast to it); the
    log-likelihood itself is always computed in fp32.
    """

    def log_px(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, s, d = z.shape
        logits = model.decode(z.reshape(b * s, d).to(dtype or z.dtype))
        logits = logits.float().reshape(b, s, -1)
        target = x.reshape(b, 1, -1).expand(b, s, logits.shape[-1])
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)

    return log_px


def _decoder_copy(model: VAE, precision: str) -> tuple[VAE, torch.dtype | None]:
    """The model in the fast inference layout, its decoder cast once to the NLL's precision."""
    fast = model.inference_copy()
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is not None:
        fast.decoder.to(dtype)  # the encoder stays fp32: it runs once per image
    return fast, dtype


#: The most of what it estimates that a timing may take: a small job (a few digits, a small K) is
#: not timed for longer than a part of its own cost.
TIMING_SHARE = 0.05


@torch.inference_mode()
def decoder_rate(model: VAE, chunk: int = DEFAULT_CHUNK, precision: str = "fp32", seconds: float = 0.3, codes: float = math.inf) -> float:
    """Latent codes per second the NLL's decoder gets through here (timed on random codes, after a warm-up),
    for ``seconds``, or for TIMING_SHARE of what decoding ``codes`` codes takes at that rate if that is less."""
    fast, dtype = _decoder_copy(model, precision)
    device = next(model.parameters()).device
    log_px = bernoulli_log_likelihood(fast, dtype)
    z = torch.randn((1, chunk, model.cfg.latent_dim), device=device)
    x = torch.rand((1, 28, 28), device=device).round()
    log_px(z, x).sum().item()
    done, t0 = 0, time.perf_counter()
    while True:
        log_px(z, x).sum().item()  # .item(): the work is done, also on an accelerator
        done += chunk
        elapsed = time.perf_counter() - t0
        if elapsed >= min(seconds, TIMING_SHARE * codes * elapsed / done):
            return done / elapsed


@torch.inference_mode()
def importance_nll(
    model: VAE,
    images: torch.Tensor,
    k: int = EvalConfig.k,
    chunk: int = DEFAULT_CHUNK,
    seed: int = 0,
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Importance-weighted negative log-likelihood −log p(x) in nats, mean over ``images`` and its standard error.

    The encoder runs once per image; the decoder runs on ``chunk`` latent codes at a time
    (``min(K, chunk)`` samples of each of ``chunk // min(K, chunk)`` images). Seeded: the same seed, K and chunk give the same numbers.
    ``precision="bf16"`` (or "fp16") runs the decoder with its weights and activations in that
    dtype: the arithmetic of bf16 autocast, several times faster where the CPU has AMX; the
    log-likelihood is then approximate to a few hundredths of a nat. The weights are cast once,
    not on every call as autocast does (for `original`'s 79 MB output layer that cast cost a
    quarter of the time).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    fast, dtype = _decoder_copy(model, precision)
    device = images.device
    per_chunk = min(k, chunk)
    images_per_batch = max(1, chunk // per_chunk)
    g = torch.Generator(device=device).manual_seed(seed)
    mu, logvar = encode_all(fast, images)
    log_px = bernoulli_log_likelihood(fast, dtype)
    t0 = time.perf_counter()
    out = []
    for start in range(0, len(images), images_per_batch):
        sl = slice(start, start + images_per_batch)
        out.append(iw_log_likelihood(mu[sl], logvar[sl], images[sl], log_px, k, per_chunk, g))
        if progress is not None:
            progress(min(start + images_per_batch, len(images)), len(images))
    ll = torch.cat(out)
    n = len(ll)
    return {
        "nll": float(-ll.mean()),
        "stderr": float(ll.std() / math.sqrt(n)) if n > 1 else float("nan"),
        "k": k,
        "chunk": chunk,
        "seed": seed,
        "precision": precision,
        "n_images": n,
        "seconds": round(time.perf_counter() - t0, 3),
    }
