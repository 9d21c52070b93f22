"""Tests for mnist_vae.data: embedded digits, IDX/npz readers, download + cache, pixel helpers."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_vae import data
from mnist_vae.errors import DataError, MnistVaeError

from _idx_helpers import STEMS, gz_payloads, idx_bytes, serve, sha256, small_arrays, write_idx, write_idx_dir
from helpers import captured_log

CLASS_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
# Fingerprint of the embedded test split: changes only if the split itself changes.
EMBEDDED_TEST_SHA = "b47133f1b05d1e889d36e7ba3b6f0a7c6460a7954dcbc11ab5e7e3fdcc07251e"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Never touch the real cache, and never send 127.0.0.1 requests through a proxy."""
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "data-root"))
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def embedded() -> data.Dataset:
    return data.load_embedded()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- embedded -----------------------------------------------------------------------------------


def test_embedded_file_checksum_and_class_counts(embedded):
    raw = importlib.resources.files("mnist_vae").joinpath("assets/mnist_embedded.npz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == data.EMBEDDED_SHA256 == embedded.sha256
    all_labels = torch.cat([embedded.train_labels, embedded.test_labels])
    assert torch.bincount(all_labels, minlength=10).tolist() == CLASS_COUNTS


def test_embedded_split_sizes_types_and_stratification(embedded):
    assert embedded.info() == {"name": "embedded", "n_train": 8000, "n_test": 2000, "sha256": data.EMBEDDED_SHA256, "source": "embedded"}
    assert embedded.train_images.shape == (8000, 28, 28) and embedded.test_images.shape == (2000, 28, 28)
    assert embedded.train_images.dtype == torch.uint8 and embedded.train_labels.dtype == torch.int64
    test_counts = torch.bincount(embedded.test_labels, minlength=10).tolist()
    for count, n_test in zip(CLASS_COUNTS, test_counts):
        assert abs(n_test - 0.2 * count) <= 1


def test_embedded_split_is_deterministic(embedded):
    again = data.load_embedded()
    assert torch.equal(again.train_images, embedded.train_images)
    assert torch.equal(again.test_labels, embedded.test_labels)
    blob = embedded.test_images.numpy().tobytes() + embedded.test_labels.numpy().tobytes()
    assert hashlib.sha256(blob).hexdigest() == EMBEDDED_TEST_SHA


def test_embedded_tampered_copy_is_rejected(tmp_path):
    raw = bytearray(importlib.resources.files("mnist_vae").joinpath("assets/mnist_embedded.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy = tmp_path / "tampered.npz"
    copy.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="tampered.npz.*SHA-256 mismatch"):
        data.load_embedded(copy)


# --- IDX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dir_round_trip(tmp_path, gz):
    arrays = small_arrays()
    paths = write_idx_dir(tmp_path, arrays, gz=gz)
    for p, a in zip(paths, arrays):
        np.testing.assert_array_equal(data.read_idx(p), a)
    ds = data.load_idx_dir(tmp_path)
    assert ds.name == "idx-dir" and ds.source == str(tmp_path)
    assert torch.equal(ds.train_images, torch.from_numpy(arrays[0]))
    assert ds.test_labels.dtype == torch.int64 and ds.test_labels.tolist() == arrays[3].tolist()
    expected_sha = hashlib.sha256("".join(sha256(p.read_bytes()) for p in paths).encode()).hexdigest()
    assert ds.sha256 == expected_sha


def _bad_files(tmp_path: Path, case: str) -> str:
    """Write a data set with one fault; returns the name of the file at fault."""
    arrays = small_arrays()
    paths = write_idx_dir(tmp_path, arrays, gz=False)
    images = idx_bytes(arrays[0])
    if case == "truncated":
        write_idx(paths[0], images[:-100])
    elif case == "trailing":
        write_idx(paths[0], images + b"\0")
    elif case == "magic":
        write_idx(paths[0], b"\x50\x4b" + images[2:])
    elif case == "type":
        write_idx(paths[0], images[:2] + b"\x0d" + images[3:])
    elif case == "shape":
        write_idx(paths[0], arrays[0][:, :27, :])
    elif case == "count":
        write_idx(paths[1], arrays[1][:-1])
        return paths[1].name
    elif case == "label10":
        labels = arrays[3].copy()
        labels[2] = 10
        write_idx(paths[3], labels)
        return paths[3].name
    elif case == "labels-as-images":
        write_idx(paths[1], arrays[0])
        return paths[1].name
    return paths[0].name


@pytest.mark.parametrize(
    "case, message",
    [
        ("truncated", "truncated IDX file: header says 12 images of 28x28 but only 9308 bytes"),
        ("trailing", "trailing bytes"),
        ("magic", "not an IDX file"),
        ("type", "element type 0x0d"),
        ("shape", "28 x 28"),
        ("count", "11 labels but"),
        ("label10", "labels must be 0..9, found 10"),
        ("labels-as-images", "expected a 1-D IDX file"),
    ],
)
def test_bad_idx_files_name_the_file(tmp_path, case, message):
    name = _bad_files(tmp_path, case)
    with pytest.raises(DataError) as err:
        data.load_idx_dir(tmp_path)
    text = str(err.value)
    assert name in text and message in text and "\n" not in text


def test_missing_idx_file_is_listed(tmp_path):
    paths = write_idx_dir(tmp_path)
    paths[2].unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        data.load_idx_dir(tmp_path)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage-after"])
def test_corrupt_gzip(tmp_path, damage):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", small_arrays()[0])
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2 : len(raw) // 2 + 8] = b"\xff" * 8
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw += b"junk"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.read_idx(path)


def test_read_idx_bogus_header_does_not_allocate(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 10)
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(path)
    gz = tmp_path / "huge.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match="truncated"):
        data.read_idx(gz)


def test_read_idx_random_bytes_only_raise_data_error(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "fuzz"
    prefixes = [b"", b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"\0\0\x08\x01", b"\0\0\x08\x03"]
    for i in range(400):
        blob = prefixes[i % len(prefixes)] + rng.bytes(int(rng.integers(0, 64)))
        path.write_bytes(blob)
        try:
            data.read_idx(path)
        except DataError as e:
            assert "\n" not in str(e)
    with pytest.raises(DataError, match="no such file"):
        data.read_idx(tmp_path / "absent")
    with pytest.raises(DataError):
        data.read_idx(tmp_path)  # a directory


# --- Keras npz ------------------------------------------------------------------------------------


def test_npz_round_trip_and_errors(tmp_path):
    tx, ty, vx, vy = small_arrays()
    good = tmp_path / "mnist.npz"
    np.savez(good, x_train=tx, y_train=ty.astype(np.int64), x_test=vx, y_test=vy)
    ds = data.load_npz(good)
    assert ds.name == "npz" and ds.info()["n_train"] == 12 and ds.sha256 == sha256(good.read_bytes())
    assert torch.equal(ds.test_images, torch.from_numpy(vx)) and ds.train_labels.dtype == torch.int64

    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=tx, y_train=ty, x_test=vx)
    with pytest.raises(DataError, match="partial.npz: missing key.*y_test"):
        data.load_npz(partial)
    bad_shape = tmp_path / "shape.npz"
    np.savez(bad_shape, x_train=tx[:, :, :27], y_train=ty, x_test=vx, y_test=vy)
    with pytest.raises(DataError, match="shape.npz: x_train"):
        data.load_npz(bad_shape)
    not_npz = tmp_path / "junk.npz"
    not_npz.write_bytes(b"hello")
    with pytest.raises(DataError, match="junk.npz"):
        data.load_npz(not_npz)


# --- pixels ---------------------------------------------------------------------------------------


def test_to_unit_float():
    x = data.to_unit_float(torch.tensor([[0, 128, 255]], dtype=torch.uint8))
    assert x.dtype == torch.float32 and x.shape == (1, 3)
    assert x.flatten().tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    with pytest.raises(TypeError):
        data.to_unit_float(x)


def test_binarize_modes():
    x = torch.tensor([0.0, 0.2, 0.5, 0.51, 1.0])
    assert data.binarize(x, "none") is x
    assert data.binarize(x, "static").tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    probs = torch.rand(200, 28, 28, generator=torch.Generator().manual_seed(0))
    a = data.binarize(probs, "dynamic", torch.Generator().manual_seed(7))
    b = data.binarize(probs, "dynamic", torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - probs.mean().item()) < 0.01
    with pytest.raises(ValueError, match="static") as err:
        data.binarize(x, "stochastic")
    assert isinstance(err.value, MnistVaeError)


# --- download and cache ---------------------------------------------------------------------------


def test_cache_dir_locations(monkeypatch, tmp_path):
    assert data.default_cache_dir() == tmp_path / "data-root" / "mnist"
    monkeypatch.delenv("MNIST_VAE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_cache_dir() == tmp_path / "xdg" / "mnist-vae" / "mnist"


def test_download_verifies_loads_and_never_downloads_twice(tmp_path):
    payloads = gz_payloads()
    sums = {n: sha256(b) for n, b in payloads.items()}
    with serve({f"/m/{n}": b for n, b in payloads.items()}) as (base, requests):
        cache = tmp_path / "cache"
        with captured_log() as lines:
            ds = data.load_mnist(cache, mirrors=[base + "/m/"], files=sums)
        assert len(requests) == 4 and len(lines) == 4
        assert ds.name == "mnist" and ds.info()["n_train"] == 12 and ds.info()["n_test"] == 5
        assert listing(cache) == sorted(payloads)
        data.download_mnist(cache, [base + "/m/"], sums)
        data.load_mnist(cache, download=False, files=sums)
        assert len(requests) == 4


def test_download_falls_back_to_second_mirror(tmp_path):
    payloads = gz_payloads()
    sums = {n: sha256(b) for n, b in payloads.items()}
    routes = {f"/good/{n}": b for n, b in payloads.items()}
    routes.update({f"/bad/{n}": b[:-1] + b"x" for n, b in payloads.items()})
    with serve(routes) as (base, requests):
        cache = tmp_path / "cache"
        data.download_mnist(cache, [base + "/bad/", base + "/good/"], sums)
    assert len(requests) == 8
    assert listing(cache) == sorted(payloads)
    assert all(sha256((cache / n).read_bytes()) == s for n, s in sums.items())


@pytest.mark.parametrize("mode", ["corrupt", "http500"])
def test_download_failure_leaves_no_partial_files(tmp_path, mode):
    payloads = gz_payloads()
    sums = {n: sha256(b) for n, b in payloads.items()}
    target = "t10k-images-idx3-ubyte.gz"
    routes: dict[str, bytes | int] = {}
    for mirror in ("a", "b"):
        routes.update({f"/{mirror}/{n}": b for n, b in payloads.items()})
        routes[f"/{mirror}/{target}"] = payloads[target][:-5] if mode == "corrupt" else 500
    cache = tmp_path / "cache"
    with serve(routes) as (base, _), pytest.raises(DataError) as err:
        data.download_mnist(cache, [base + "/a/", base + "/b/"], sums)
    text = str(err.value)
    assert text.startswith(target) and "/a/" in text and "/b/" in text and "\n" not in text
    assert ("SHA-256 mismatch" if mode == "corrupt" else "500") in text
    # Files verified before the failure stay (they are good); it stops at the first file that fails,
    # and nothing partial or temporary is left behind.
    assert listing(cache) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_auto_falls_back_to_embedded_offline(tmp_path):
    cache = tmp_path / "cache"
    with captured_log() as lines:
        ds = data.load_dataset("auto", cache_dir=cache, mirrors=[closed_port_url(), closed_port_url()], probe_timeout=1.0)
    assert ds.name == "embedded" and len(lines) == 1
    assert lines[0].startswith("dataset: embedded digits (8,000 train / 2,000 test)")
    assert "not downloadable" in lines[0]
    assert not cache.exists()


def test_auto_partial_download_leaves_cache_untouched(tmp_path):
    payloads = gz_payloads()
    sums = {n: sha256(b) for n, b in payloads.items()}
    routes: dict[str, bytes | int] = {f"/m/{n}": b for n, b in payloads.items()}
    routes["/m/t10k-labels-idx1-ubyte.gz"] = 500
    cache = tmp_path / "deep" / "cache"
    with serve(routes) as (base, requests), captured_log() as lines:
        ds = data.load_dataset("auto", cache_dir=cache, mirrors=[base + "/m/"], files=sums)
    assert ds.name == "embedded" and len(lines) == 1 and len(requests) == 4
    assert not (tmp_path / "deep").exists()


def test_auto_uses_cached_or_downloadable_mnist(tmp_path):
    payloads = gz_payloads()
    sums = {n: sha256(b) for n, b in payloads.items()}
    cache = tmp_path / "cache"
    with serve({f"/m/{n}": b for n, b in payloads.items()}) as (base, requests), captured_log() as lines:
        ds = data.load_dataset("auto", cache_dir=cache, mirrors=[base + "/m/"], files=sums)
        assert ds.name == "mnist" and "downloaded" in lines[-1] and len(lines) == 1
        ds = data.load_dataset("auto", cache_dir=cache, mirrors=[base + "/m/"], files=sums)
        assert ds.name == "mnist" and "cached" in lines[-1] and len(requests) == 4


def test_load_dataset_names_and_paths(tmp_path):
    with pytest.raises(DataError, match="auto, embedded, mnist, fashion-mnist"):
        data.load_dataset("cifar")
    write_idx_dir(tmp_path / "idx")
    tx, ty, vx, vy = small_arrays()
    np.savez(tmp_path / "m.npz", x_train=tx, y_train=ty, x_test=vx, y_test=vy)
    with captured_log() as lines:
        assert data.load_dataset(path=tmp_path / "idx").name == "idx-dir"
        assert data.load_dataset(path=tmp_path / "m.npz").name == "npz"
        assert data.load_dataset("embedded").name == "embedded"
    assert len(lines) == 3
    with pytest.raises(DataError, match="nowhere"):
        data.load_dataset(path=tmp_path / "nowhere")


# --- Fashion-MNIST --------------------------------------------------------------------------------


def test_fashion_mnist_not_found(monkeypatch, tmp_path):
    monkeypatch.setattr(data.datasets, "FASHION_DIRS", [str(tmp_path / "none")])
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()


def test_fashion_mnist_from_user_dir(tmp_path):
    write_idx_dir(tmp_path / "f", gz=False)
    assert data.load_fashion_mnist(tmp_path / "f").name == "fashion-mnist"


@pytest.mark.skipif(not all((FASHION_DIR / f"{s}.gz").exists() for s in STEMS), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_system_install():
    ds = data.load_fashion_mnist()
    assert ds.name == "fashion-mnist" and ds.source == str(FASHION_DIR)
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10


def test_mnist_offline_suggests_the_embedded_digits_and_leaves_no_empty_folder(tmp_path):
    cache = tmp_path / "cache" / "mnist"
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", cache_dir=cache, mirrors=[closed_port_url(), closed_port_url()])
    text = str(err.value)
    assert "download failed from every mirror" in text and "--dataset embedded" in text and "\n" not in text
    assert not (tmp_path / "cache").exists()  # no empty mnist/ folder left in the cache
