"""The variational autoencoder: encode / reparameterize / decode / forward (Kingma & Welling, 2014)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder


class VAE(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)), p(z) = N(0, I), p(x|z) = Bernoulli(sigmoid(decoder(z)))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 28, 28] (or [B, 1, 28, 28], [B, 784]) in [0, 1] -> μ, log σ² [B, latent_dim]."""
        return self.encoder(x)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = μ + σ·ε with ε ~ N(0, I), so gradients flow through μ and σ."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, latent_dim] -> Bernoulli logits [B, 1, 28, 28]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (logits [B, 1, 28, 28], μ, log σ²).

        ``eps`` [B, latent_dim] supplies the reparameterisation noise (drawn here when None); the
        data-parallel trainer passes each process its slice of one global draw.
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I): pixel probabilities [n, 28, 28]."""
        # z is drawn on the CPU, so a seeded generator gives the same samples on every device.
        z = torch.randn((n, self.cfg.latent_dim), generator=generator).to(next(self.parameters()).device)
        return torch.sigmoid(self.decode(z).float()).reshape(n, 28, 28)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
