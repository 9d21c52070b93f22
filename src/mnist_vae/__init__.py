"""mnist-vae: a variational autoencoder for handwritten digits (LSTM encoder, transposed-conv decoder)."""

from ._version import __version__

__all__ = ["__version__", "load_run", "load_pretrained", "TrainedVAE", "register_encoder", "register_decoder"]


def __getattr__(name: str):
    # Lazy, so that `import mnist_vae` (and the CLI's start-up) does not import torch.
    if name in ("load_run", "load_pretrained", "TrainedVAE"):
        from . import api

        return getattr(api, name)
    if name in ("register_encoder", "register_decoder"):  # plugins: docs/plugins.md
        from .models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'mnist_vae' has no attribute {name!r}")
