"""The test ELBO of a trained model, split into its terms: reconstruction (sampled and at z = μ) and KL per dimension."""

from __future__ import annotations

from typing import Any

import torch

from ..losses import EVAL_BATCH, bce_per_image, elbo, kl_per_dim
from ..models import VAE


@torch.inference_mode()
def encode_all(model: VAE, images: torch.Tensor, batch_size: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, log σ²) of every image, float32 [N, D] each, in eval mode."""
    model.eval()
    mus, logvars = [], []
    for start in range(0, len(images), batch_size):
        mu, logvar = model.encode(images[start : start + batch_size])
        mus.append(mu.float())
        logvars.append(logvar.float())
    return torch.cat(mus), torch.cat(logvars)


@torch.inference_mode()
def elbo_report(model: VAE, images: torch.Tensor, batch_size: int = EVAL_BATCH, seed: int = 0) -> dict[str, Any]:
    """Test ELBO split into reconstruction and KL (one seeded z per image), BCE with z = μ, KL per dimension.

    All in nats per image (means over ``images``); ``kl_per_dim`` is a list of length latent_dim.
    """
    model.eval()
    g = torch.Generator(device=images.device).manual_seed(seed)
    stats = elbo(model, images, batch_size, generator=g)
    recon_mu = 0.0
    kl_dims = None
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        mu, logvar = model.encode(x)
        recon_mu += bce_per_image(model.decode(mu).float(), x).sum(dtype=torch.float64).item()
        k = kl_per_dim(mu.float(), logvar.float()).sum(0, dtype=torch.float64)
        kl_dims = k if kl_dims is None else kl_dims + k
    n = len(images)
    return {
        "elbo": stats["loss"],
        "recon": stats["recon"],
        "kl": stats["kl"],
        "recon_mu": recon_mu / n,
        "kl_per_dim": (kl_dims / n).tolist() if kl_dims is not None else [],
    }
