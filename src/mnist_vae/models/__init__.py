"""Model code: the VAE, its encoder and decoder. No CLI, data, file or plotting imports here."""

from .vae import VAE, count_parameters, lerp

__all__ = ["VAE", "count_parameters", "lerp"]
