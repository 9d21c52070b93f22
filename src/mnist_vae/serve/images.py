"""Images over HTTP: base64 strings of 784 bytes, and grayscale PNGs (Pillow, which matplotlib brings)."""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image


def _bytes(img: torch.Tensor) -> torch.Tensor:
    """Probabilities in [0, 1] as 0..255 bytes."""
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


def image_b64(img: torch.Tensor) -> str:
    """A [28, 28] probability image as base64 of 784 bytes (0..255)."""
    return base64.b64encode(_bytes(img).numpy().tobytes()).decode("ascii")


def png_gray(img: torch.Tensor) -> bytes:
    """A [H, W] probability image as an 8-bit grayscale PNG."""
    buf = io.BytesIO()
    Image.fromarray(_bytes(img).numpy()).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()
