"""Tiling digits into one mosaic image (numpy only, so TensorBoard logging does not import matplotlib)."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float(images: Any) -> np.ndarray:
    """Images (torch or numpy; uint8 0..255 or floats in [0, 1]) as float32 in [0, 1]."""
    arr = np.asarray(images.cpu() if hasattr(images, "cpu") else images)
    return arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)


def tile(images: Any, ncols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """[N, H, W] -> one [rows·(H+pad)+pad, ncols·(W+pad)+pad] mosaic, ``ncols`` per row, gaps of ``fill``."""
    images = as_float(images)
    n = len(images)
    nrows = max(1, -(-n // ncols))
    h, w = images.shape[1:]
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), fill, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return out
