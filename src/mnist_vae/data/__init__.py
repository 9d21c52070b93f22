"""Data: the datasets (embedded digits, MNIST, Fashion-MNIST, user files) and the pixels the model sees."""

from .datasets import (
    EMBEDDED_SHA256,
    Dataset,
    load_dataset,
    load_embedded,
    load_fashion_mnist,
    load_idx_dir,
    load_mnist,
    load_npz,
    read_idx,
)
from .download import data_root, default_cache_dir, download_mnist
from .transforms import Prepared, binarize, prepare_data, to_unit_float

__all__ = [
    "EMBEDDED_SHA256",
    "Dataset",
    "Prepared",
    "binarize",
    "data_root",
    "default_cache_dir",
    "download_mnist",
    "load_dataset",
    "load_embedded",
    "load_fashion_mnist",
    "load_idx_dir",
    "load_mnist",
    "load_npz",
    "prepare_data",
    "read_idx",
    "to_unit_float",
]
