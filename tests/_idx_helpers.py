"""Test helpers: write small IDX files and serve them from a local HTTP server."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, then data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray | bytes, gz: bool | None = None) -> Path:
    """Write array (or ready-made bytes) as IDX; gzip it when gz, or when the name ends in .gz."""
    data = array if isinstance(array, (bytes, bytearray)) else idx_bytes(array)
    if gz is None:
        gz = str(path).endswith(".gz")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def small_arrays(n_train: int = 12, n_test: int = 5, seed: int = 0) -> list[np.ndarray]:
    """(train images, train labels, test images, test labels) with random pixels and labels 0..9."""
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        np.arange(n_test, dtype=np.uint8) % 10,
    ]


def write_idx_dir(directory: Path, arrays: list[np.ndarray] | None = None, gz: bool = True) -> list[Path]:
    """Write the four standard-named IDX files; returns their paths in STEMS order."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = small_arrays() if arrays is None else arrays
    return [write_idx(directory / (stem + (".gz" if gz else "")), a, gz) for stem, a in zip(STEMS, arrays)]


def gz_payloads(arrays: list[np.ndarray] | None = None) -> dict[str, bytes]:
    """{file name: gzip bytes} for the four files, as a mirror would serve them."""
    arrays = small_arrays() if arrays is None else arrays
    return {f"{stem}.gz": gzip.compress(idx_bytes(a), mtime=0) for stem, a in zip(STEMS, arrays)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def serve(routes: dict[str, bytes | int]) -> Iterator[tuple[str, list[str]]]:
    """Serve {url path: body, or an HTTP status code} on 127.0.0.1; yields (base URL, requested paths)."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = routes.get(self.path, 404)
            if isinstance(body, int):
                self.send_error(body)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
