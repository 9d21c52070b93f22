"""The notebook API: ``vae = load_run("runs/x")`` (or ``load_pretrained("lstm-plus")``), then ``sample``, ``encode``, ``decode``, ``reconstruct``.

Inputs may be torch tensors or numpy arrays: one image [28, 28], or a batch [B, 28, 28],
[B, 1, 28, 28] or [B, 784]; uint8 pixels (0..255) or floats in [0, 1]. Outputs are of the same
kind as the input (numpy in, numpy out; tensors come back on the CPU), and a single image gives
results without the batch axis. Images out are pixel probabilities [.., 28, 28] in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import IMAGE_SIZE, RunConfig
from .errors import MnistVaeError
from .models import VAE

PIXELS = IMAGE_SIZE * IMAGE_SIZE


class TrainedVAE:
    """A trained model in eval mode, with array-friendly methods (no gradients are tracked)."""

    def __init__(
        self, model: VAE, config: RunConfig, path: Path | None = None, epoch: int = 0, history: list[dict[str, Any]] | None = None
    ) -> None:
        self.model = model.eval()
        """The underlying ``torch.nn.Module``, in eval mode."""
        self.config = config
        """The run's configuration (``config.name``, ``config.model``, ``config.train``)."""
        self.path = path
        """The run folder (or the shipped weights' file), or None for a model built in memory."""
        self.epoch = epoch
        """How many epochs the model was trained for."""
        self.history = history or []
        """The run's per-epoch metrics (one dict per epoch, as in ``metrics.jsonl``)."""

    @property
    def device(self) -> torch.device:
        """The device the model's weights are on."""
        return next(self.model.parameters()).device

    @property
    def latent_dim(self) -> int:
        """The size of a latent code z."""
        return self.config.model.latent_dim

    def __repr__(self) -> str:
        return f"TrainedVAE({self.config.name!r}, latent_dim={self.latent_dim}, epoch={self.epoch}, path={str(self.path)!r})"

    # --- conversions -----------------------------------------------------------------------------

    def _images(self, x: Any) -> tuple[torch.Tensor, bool, bool]:
        """-> (float [B, 28, 28] on the device, input was numpy, input was a single image)."""
        is_numpy = isinstance(x, np.ndarray)
        t = torch.from_numpy(np.ascontiguousarray(x)) if is_numpy else x
        if not isinstance(t, torch.Tensor):
            raise MnistVaeError(f"images: expected a torch tensor or numpy array, got {type(x).__name__}")
        shape = tuple(t.shape)
        single = shape == (IMAGE_SIZE, IMAGE_SIZE) or shape == (PIXELS,)
        if single:
            t = t.unsqueeze(0)
        if not (t.dim() >= 2 and t[0].numel() == PIXELS and t.shape[-1] in (IMAGE_SIZE, PIXELS)):
            raise MnistVaeError(f"images: expected shape [28, 28], [B, 28, 28], [B, 1, 28, 28] or [B, 784], got {list(shape)}")
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif t.is_floating_point():
            t = t.float()
        else:
            raise MnistVaeError(f"images: expected uint8 pixels or floats in [0, 1], got {t.dtype}")
        return t.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).to(self.device), is_numpy, single

    def _latents(self, z: Any) -> tuple[torch.Tensor, bool, bool]:
        is_numpy = isinstance(z, np.ndarray)
        t = torch.from_numpy(np.ascontiguousarray(z)) if is_numpy else z
        if not isinstance(t, torch.Tensor) or t.shape[-1:] != (self.latent_dim,) or t.dim() > 2:
            got = list(t.shape) if hasattr(t, "shape") else type(z).__name__
            raise MnistVaeError(f"z: expected shape [{self.latent_dim}] or [B, {self.latent_dim}], got {got}")
        single = t.dim() == 1
        return t.reshape(-1, self.latent_dim).float().to(self.device), is_numpy, single

    @staticmethod
    def _out(t: torch.Tensor, is_numpy: bool, single: bool) -> Any:
        t = t.detach().cpu()
        if single:
            t = t[0]
        return t.numpy() if is_numpy else t

    # --- the model -------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, x: Any) -> tuple[Any, Any]:
        """Images -> (μ, log σ²) of q(z|x), each [B, latent_dim]."""
        t, is_numpy, single = self._images(x)
        mu, logvar = self.model.encode(t)
        return self._out(mu, is_numpy, single), self._out(logvar, is_numpy, single)

    @torch.no_grad()
    def decode(self, z: Any) -> Any:
        """Latent codes [B, latent_dim] -> pixel probabilities [B, 28, 28]."""
        t, is_numpy, single = self._latents(z)
        return self._out(self.model.decode_probs(t), is_numpy, single)

    @torch.no_grad()
    def reconstruct(self, x: Any) -> Any:
        """Images -> the decoding of their posterior means, pixel probabilities of the same batch shape [B, 28, 28]."""
        t, is_numpy, single = self._images(x)
        return self._out(self.model.reconstruct(t), is_numpy, single)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, numpy: bool = False) -> Any:
        """``n`` images decoded from z ~ N(0, I) [n, 28, 28]; a ``seed`` makes them reproducible on any device."""
        if n < 1:
            raise MnistVaeError(f"n: must be a positive number of samples, got {n}")
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        images = self.model.sample(n, gen)  # z is drawn on the CPU, so a seed means the same samples everywhere
        return self._out(images, numpy, False)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> TrainedVAE:
    """Open a run folder's newest good checkpoint as a :class:`TrainedVAE` on ``device``.

    A damaged newer checkpoint is skipped with a warning (Python's ``logging``; shown on stderr by default).
    """
    from .runs.folder import open_run
    from .runtime.device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    run = open_run(run_dir, device=dev)
    return TrainedVAE(run.model, run.config, run.path, run.epoch, run.history)


def load_pretrained(name: str, device: str | torch.device = "cpu") -> TrainedVAE:
    """One of the trained models that ship with the package (``mnist-vae configs`` marks them) as a :class:`TrainedVAE`.

    The file's SHA-256 is checked against ``pretrained.json`` before it is read; an unknown
    ``name`` raises :class:`~mnist_vae.errors.ConfigError` listing the valid names.
    """
    from .runs.pretrained import open_pretrained
    from .runtime.device import resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    run = open_pretrained(name, device=dev)
    return TrainedVAE(run.model, run.config, run.path, run.epoch, run.history)
