"""The package version, in a module of its own so that anything can read it without importing the package's API."""

__version__ = "0.1.0"
"""The installed version of mnist-vae (``mnist-vae --version`` prints it); the wheel's metadata reads it from here."""
