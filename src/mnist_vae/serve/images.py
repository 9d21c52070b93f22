"""Images over HTTP: base64 strings of 784 bytes, and grayscale PNGs written without an imaging library."""

from __future__ import annotations

import base64
import struct
import zlib

import torch


def image_b64(img: torch.Tensor) -> str:
    """A [28, 28] probability image as base64 of 784 bytes (0..255)."""
    return base64.b64encode((img.clamp(0, 1) * 255).round().to(torch.uint8).contiguous().numpy().tobytes()).decode("ascii")


def png_gray(img: torch.Tensor) -> bytes:
    """A [H, W] probability image as an 8-bit grayscale PNG (no imaging library needed)."""
    h, w = img.shape
    pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    raw = b"".join(b"\0" + pixels[r].tobytes() for r in range(h))  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
