"""Model code: the VAE, its encoder and decoder, and the registry of their kinds. No CLI, data, file or plotting imports here."""

from .registry import (
    Plugin,
    PluginError,
    decoder_kinds,
    encoder_kinds,
    register_decoder,
    register_encoder,
    unregister_decoder,
    unregister_encoder,
)
from .vae import VAE, build_model, count_parameters, lerp

__all__ = [
    "VAE",
    "Plugin",
    "PluginError",
    "build_model",
    "count_parameters",
    "decoder_kinds",
    "encoder_kinds",
    "lerp",
    "register_decoder",
    "register_encoder",
    "unregister_decoder",
    "unregister_encoder",
]
