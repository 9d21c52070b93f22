"""Evaluation of a trained VAE on held-out images."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from .losses import bce_per_image, kl_per_image
from .models import VAE


@torch.no_grad()
def elbo(
    model: VAE,
    images: torch.Tensor,
    batch_size: int = 1000,
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
