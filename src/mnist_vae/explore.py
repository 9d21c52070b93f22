"""Images computed from a model: reconstructions, samples, interpolations (no plotting here)."""

from __future__ import annotations

import torch

from .models import VAE


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """Decode the posterior mean of each image: probabilities [B, 28, 28]."""
    model.eval()
    mu, _ = model.encode(x)
    return torch.sigmoid(model.decode(mu).float()).reshape(len(x), 28, 28)


@torch.no_grad()
def sample(model: VAE, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images from z ~ N(0, I) drawn with ``seed``: probabilities [n, 28, 28]."""
    model.eval()
    return model.sample(n, torch.Generator().manual_seed(seed))


@torch.no_grad()
def interpolate(model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Decode ``steps`` evenly spaced points between the posterior means of two images: [steps, 28, 28]."""
    model.eval()
    mu, _ = model.encode(torch.stack([x_a, x_b]))
    alpha = torch.linspace(0, 1, steps, device=mu.device).unsqueeze(1)  # [steps, 1]
    z = (1 - alpha) * mu[0] + alpha * mu[1]  # [steps, latent_dim]
    return torch.sigmoid(model.decode(z).float()).reshape(steps, 28, 28)
