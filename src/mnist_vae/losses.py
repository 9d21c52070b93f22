"""Terms of the negative ELBO, per image; pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, KL), each the mean over the batch; loss = recon + β·KL."""
    recon = bce_per_image(logits.float(), x).mean()
    kl = kl_per_image(mu.float(), logvar.float()).mean()
    return recon + beta * kl, recon, kl


def kl_weight(beta: float, warmup_epochs: int, epoch: int, step: int, steps_per_epoch: int) -> float:
    """β times a linear warm-up from 0 over ``warmup_epochs`` (0 = no warm-up); epoch is 0-based."""
    if warmup_epochs <= 0:
        return beta
    progress = (epoch + step / steps_per_epoch) / warmup_epochs
    return beta * min(1.0, progress)
