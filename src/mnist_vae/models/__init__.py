"""Model code: no CLI, data or plotting imports here."""

from .vae import VAE, count_parameters

__all__ = ["VAE", "count_parameters"]
