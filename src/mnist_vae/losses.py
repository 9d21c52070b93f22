"""The negative ELBO: its terms per image (pure functions of tensors) and its mean over a set of images."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Protocol

import torch
import torch.nn.functional as F

#: Images per evaluation batch; small batches keep activations in cache (docs/performance.md).
EVAL_BATCH = 250


def bce_per_image(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) for Bernoulli pixels, summed over the 784 pixels: [B].

    Computed from logits, which is exact and stable, unlike BCE on a clipped sigmoid.
    """
    target = x.reshape(logits.shape).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension: [B, D].

    Closed form from Kingma & Welling (2014), Appendix B: -½ (1 + log σ² − μ² − σ²).
    """
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def kl_per_image(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) ‖ N(0, I)) summed over latent dimensions: [B]."""
    return kl_per_dim(mu, logvar).sum(1)


def elbo_terms(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, KL), each the mean over the batch; loss = recon + β·KL.

    ``free_bits`` > 0 (Kingma et al., 2016) puts a floor under each latent dimension's batch-mean KL
    in the loss only, so dimensions below it are not pushed to the prior; the KL returned is the true one.
    """
    recon = bce_per_image(logits.float(), x).mean()
    kl = kl_per_image(mu.float(), logvar.float()).mean()
    if free_bits > 0:
        return recon + beta * kl_per_dim(mu.float(), logvar.float()).mean(0).clamp(min=free_bits).sum(), recon, kl
    return recon + beta * kl, recon, kl


def log_weights(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor, beta: float = 1.0
) -> torch.Tensor:
    """log p(x|z) + β·(log p(z) − log q(z|x)) for z = μ + σ·ε, ε [K, B, D]: [K, B] (the 2π terms cancel)."""
    k, b = eps.shape[0], eps.shape[1]
    log_px = -bce_per_image(logits.float(), x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])).view(k, b)
    z = mu.float() + torch.exp(0.5 * logvar.float()) * eps
    return log_px + beta * (0.5 * (eps.pow(2) - z.pow(2) + logvar.float())).sum(-1)


def iwae_terms(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, KL): loss = −(log mean_k w_k), the importance-weighted bound of Burda et al.
    (2016) with K = eps.shape[0] samples, its mean over the batch; ``logits`` [K·B, ...] decode z = μ + σ·ε.

    β scales log p(z) − log q(z|x) inside the weights (a KL warm-up); reconstruction and KL are the
    ELBO's terms (averaged over the K samples), for the epoch's record.
    """
    k = eps.shape[0]
    loss = -(torch.logsumexp(log_weights(logits, x, mu, logvar, eps, beta), 0) - math.log(k)).mean()
    recon = bce_per_image(logits.float(), x.unsqueeze(0).expand(k, *x.shape).reshape(-1, *x.shape[1:])).mean()
    return loss, recon, kl_per_image(mu.float(), logvar.float()).mean()


def kl_weight(beta: float, warmup_epochs: int, epoch: int, step: int, steps_per_epoch: int) -> float:
    """β times a linear warm-up from 0 over ``warmup_epochs`` (0 = no warm-up); epoch is 0-based."""
    if warmup_epochs <= 0:
        return beta
    progress = (epoch + step / steps_per_epoch) / warmup_epochs
    return beta * min(1.0, progress)


class Autoencoder(Protocol):
    """What :func:`elbo` needs of a model (the :class:`~mnist_vae.models.VAE` has it)."""

    training: bool

    def train(self, mode: bool = True) -> Autoencoder: ...

    def eval(self) -> Autoencoder: ...

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def elbo(
    model: Autoencoder,
    images: torch.Tensor,
    batch_size: int = EVAL_BATCH,
    generator: torch.Generator | None = None,
    autocast: torch.autocast | None = None,
) -> dict[str, float]:
    """Mean negative ELBO over ``images`` [N, 28, 28] in [0, 1], with one z ~ q(z|x) per image.

    Returns {"loss", "recon", "kl"} in nats per image; the model is put in eval mode (no dropout)
    and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    recon_sum = images.new_zeros((), dtype=torch.float64)
    kl_sum = images.new_zeros((), dtype=torch.float64)
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            with autocast or nullcontext():
                mu, logvar = model.encode(x)
                z = model.reparameterize(mu.float(), logvar.float(), generator=generator)
                logits = model.decode(z)
            recon_sum += bce_per_image(logits.float(), x).sum(dtype=torch.float64)
            kl_sum += kl_per_image(mu.float(), logvar.float()).sum(dtype=torch.float64)
    finally:
        model.train(was_training)
    n = len(images)
    recon, kl = recon_sum.item() / n, kl_sum.item() / n
    return {"loss": recon + kl, "recon": recon, "kl": kl}
