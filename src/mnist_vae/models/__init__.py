"""Model code: the VAE, its encoder and decoder, and the registry of their kinds. No CLI, data, file or plotting imports here."""

from .registry import (
    REGISTRY,
    Plugin,
    PluginError,
    decoder_kinds,
    encoder_kinds,
    plugin_records,
    register,
    register_decoder,
    register_encoder,
)
from .vae import VAE, build_model, count_parameters, lerp

__all__ = [
    "REGISTRY",
    "VAE",
    "Plugin",
    "PluginError",
    "build_model",
    "count_parameters",
    "decoder_kinds",
    "encoder_kinds",
    "lerp",
    "plugin_records",
    "register",
    "register_decoder",
    "register_encoder",
]
