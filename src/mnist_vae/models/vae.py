"""The variational autoencoder (Kingma & Welling, 2014): encode / reparameterize / decode, and the inference API.

Every picture, sample and likelihood in the program goes through the methods here:
:meth:`VAE.decode_probs` (z -> pixel probabilities), :meth:`VAE.sample`, :meth:`VAE.reconstruct`,
:meth:`VAE.interpolate`, and :meth:`VAE.inference_copy` (the same model in the fast layout).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import IMAGE_SIZE, ModelConfig, RunConfig
from .decoder import Decoder
from .encoder import Encoder  # noqa: F401  (registers the built-in encoders)
from .registry import build_decoder, build_encoder


class VAE(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)), p(z) = N(0, I), p(x|z) = Bernoulli(sigmoid(decoder(z))).

    The encoder and decoder are the kinds ``cfg.encoder`` and ``cfg.decoder`` name: built in
    (``lstm`` / ``mlp``, ``conv``) or a plugin's (models/registry.py, docs/plugins.md).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.decoder = build_decoder(cfg)

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.parameters()).device

    @property
    def channels_last(self) -> bool:
        """Whether the built-in decoder runs its convolutions channels-last (the same numbers, often faster on CPUs)."""
        return bool(getattr(self.decoder, "channels_last", False))

    @channels_last.setter
    def channels_last(self, value: bool) -> None:
        if isinstance(self.decoder, Decoder):  # a plugin's decoder keeps its own layout
            self.decoder.channels_last = value

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 28, 28] (or [B, 1, 28, 28], [B, 784]) in [0, 1] -> μ, log σ² [B, latent_dim]."""
        return self.encoder(x.reshape(x.shape[0], IMAGE_SIZE, IMAGE_SIZE))  # every encoder is given [B, 28, 28]

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
        data-parallel trainer passes each process its slice of one global draw. With ``eps``
        [K, B, latent_dim] (the importance-weighted bound) the logits are [K·B, 1, 28, 28], sample-major.
        """
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z.reshape(-1, z.shape[-1])), mu, logvar  # [B, D] or [K·B, D]

    # --- inference: no gradients, eval mode expected ------------------------------------------

    @torch.no_grad()
    def decode_probs(self, z: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """z [B, latent_dim] (any device) -> pixel probabilities float32 [B, 28, 28] on the model's device.

        ``batch_size`` decodes in pieces of that many codes (bounded memory for large B).
        """
        z = z.to(self.device)
        if batch_size is None or len(z) <= batch_size:  # (-1, not len(z): the batch stays symbolic when exported)
            return torch.sigmoid(self.decode(z).float()).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        return torch.cat([self.decode_probs(part) for part in z.split(batch_size)])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, batch_size: int | None = None) -> torch.Tensor:
        """``n`` images decoded from z ~ N(0, I): pixel probabilities [n, 28, 28] on the model's device.

        z is drawn on the CPU, so a seeded generator gives the same samples on every device.
        """
        z = torch.randn((n, self.cfg.latent_dim), generator=generator)
        return self.decode_probs(z, batch_size) if n else torch.zeros(0, IMAGE_SIZE, IMAGE_SIZE, device=self.device)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each image: probabilities [B, 28, 28]."""
        mu, _ = self.encode(x.to(self.device))
        return self.decode_probs(mu)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
        """Decode ``steps`` evenly spaced points between the posterior means of two images: [steps, 28, 28]."""
        mu, _ = self.encode(torch.stack([x_a, x_b]).to(self.device))
        return self.decode_probs(lerp(mu[0], mu[1], steps))

    def inference_copy(self) -> VAE:
        """An eval-mode copy in the fast inference layout: channels-last activations, in-place ReLUs.

        The same numbers as the model; on CPU the transposed convolutions run faster channels-last.
        """
        fast = copy.deepcopy(self).eval()
        for module in fast.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = True  # inference only: no autograd needs the pre-activation
        fast.channels_last = True  # activations too, not only the weights
        return fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # (missing from torch's stubs)


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced points from a [D] to b [D], ends included: [steps, D]."""
    alpha = torch.linspace(0, 1, steps, device=a.device).unsqueeze(1)  # [steps, 1]
    return (1 - alpha) * a + alpha * b


def build_model(cfg: RunConfig, device: torch.device | str = "cpu") -> VAE:
    """The run's VAE on ``device`` with its training layout applied (``channels_last``): the one way a run gets its model."""
    model = VAE(cfg.model).to(device)
    model.channels_last = cfg.train.channels_last
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
