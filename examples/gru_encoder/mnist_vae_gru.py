"""mnist-vae-gru: a GRU encoder for mnist-vae that reads the image's 28 rows (an example plugin; docs/plugins.md).

Installed, it provides ``encoder = "gru"`` through the entry point group ``mnist_vae.models``;
its options go in ``[model.encoder_options]`` (``hidden``, ``layers``, ``bidirectional``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from mnist_vae.config import ModelConfig

__version__ = "0.1.0"


@dataclass(frozen=True)
class GRUOptions:
    """The options of ``encoder = "gru"``: hidden units per direction, stacked layers, both reading directions."""

    hidden: int = 64
    layers: int = 1
    bidirectional: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got hidden = {self.hidden}, layers = {self.layers}")


class GRUEncoder(nn.Module):
    """x [B, 28, 28] in [0, 1] -> (μ, log σ²), each [B, latent_dim]: a GRU over the rows, its final state to two heads."""

    def __init__(self, latent_dim: int, options: GRUOptions) -> None:
        super().__init__()
        self.bidirectional = options.bidirectional
        self.gru = nn.GRU(28, options.hidden, num_layers=options.layers, batch_first=True, bidirectional=options.bidirectional)
        width = options.hidden * (2 if options.bidirectional else 1)
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, h_n = self.gru(x)  # one step per row; h_n [layers·directions, B, hidden]
        h = torch.cat([h_n[-2], h_n[-1]], 1) if self.bidirectional else h_n[-1]  # the top layer's final state(s)
        return self.mu(h), self.logvar(h)


def build(cfg: ModelConfig, options: GRUOptions) -> nn.Module:
    """mnist-vae calls this with the model config (for ``latent_dim``) and the checked options."""
    return GRUEncoder(cfg.latent_dim, options)


def register() -> None:
    """The entry point: mnist-vae calls it the first time a config names a kind it does not know (or lists them)."""
    from mnist_vae import register_encoder

    register_encoder("gru", build, options=GRUOptions)
