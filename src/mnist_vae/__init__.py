"""mnist-vae: a variational autoencoder for handwritten digits (LSTM encoder, transposed-conv decoder)."""

__version__ = "0.1.0"
