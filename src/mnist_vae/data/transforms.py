"""Pixels as the model sees them: uint8 -> [0, 1] floats, binarisation, and a run's tensors on its device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..config import BINARIZE_MODES
from ..errors import ConfigError
from .datasets import Dataset, load_dataset

if TYPE_CHECKING:
    from ..config import RunConfig

TEST_BINARIZE_SEED = 1234  # the test split is binarised once, identically for every run


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1] (x / 255)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_unit_float expects uint8 pixels, got {images.dtype}")
    return images.to(torch.float32).div_(255.0)


def binarize(x: torch.Tensor, mode: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binarize pixels in [0, 1]: "none" returns x; "static" thresholds at 0.5 (same every epoch);
    "dynamic" samples each pixel as Bernoulli(x) (fresh every call, reproducible via ``generator``).
    """
    if mode == "none":
        return x
    if mode == "static":
        return (x > 0.5).to(x.dtype)
    if mode == "dynamic":
        return torch.bernoulli(x, generator=generator)
    raise ConfigError(f"unknown binarization mode {mode!r}; valid modes: {', '.join(BINARIZE_MODES)}")


@dataclass
class Prepared:
    """Tensors a run trains and evaluates on, already on the device."""

    dataset: Dataset
    train_x: torch.Tensor  # [N, 28, 28] float in [0, 1] (before per-epoch dynamic binarisation)
    test_x: torch.Tensor  # [M, 28, 28] float, binarised once if binarisation is on
    test_labels: torch.Tensor


def prepare_data(cfg: RunConfig, device: torch.device, dataset: Dataset | None = None, download: bool = True) -> Prepared:
    """Load the dataset the config names (unless given) and move it to ``device`` as float tensors, once."""
    t = cfg.train
    ds = dataset or load_dataset(t.dataset, t.data_path or None, download=download)
    train_x = to_unit_float(ds.train_images)
    test_x = to_unit_float(ds.test_images)
    if t.binarize == "static":
        train_x = binarize(train_x, "static")
    if t.binarize != "none":
        # Drawn on the CPU, then moved: the test set is the same whatever the device.
        g = torch.Generator(device="cpu").manual_seed(TEST_BINARIZE_SEED)
        test_x = binarize(test_x, t.binarize, g)
    return Prepared(ds, train_x.to(device), test_x.to(device), ds.test_labels.to(device))
