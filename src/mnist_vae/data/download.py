"""Full MNIST: the cache folder, and downloading the four archives from public mirrors, checksum-verified."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import DataError
from ..io import atomic_path, sha256_file

log = logging.getLogger(__name__)

#: The four canonical MNIST archives and their SHA-256 sums, in the order used for Dataset.sha256.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]
_CHUNK = 1 << 20


def data_root() -> Path:
    """``$MNIST_VAE_DATA``, else ``$XDG_CACHE_HOME/mnist-vae``, else ``~/.cache/mnist-vae``."""
    if os.environ.get("MNIST_VAE_DATA"):
        return Path(os.environ["MNIST_VAE_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mnist-vae"


def default_cache_dir() -> Path:
    """Where full MNIST is cached: ``data_root() / "mnist"``."""
    return data_root() / "mnist"


def cached_ok(cache: Path, files: Mapping[str, str]) -> bool:
    return all((cache / n).is_file() and sha256_file(cache / n) == s for n, s in files.items())


class _FetchFailed(Exception):
    """One mirror could not deliver a file (network, HTTP, or checksum): try the next one."""


def _fetch(url: str, dest: Path, sha256: str, timeout: float) -> None:
    """Stream url to a temporary beside dest, check its SHA-256, then rename it into place."""
    with atomic_path(dest, suffix=".part") as tmp, open(tmp, "wb") as out:
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
        except (OSError, ValueError, http.client.HTTPException) as e:  # network faults, not disk faults
            raise _FetchFailed(_brief(e)) from None
        if h.hexdigest() != sha256:
            raise _FetchFailed(f"SHA-256 mismatch (got {h.hexdigest()[:12]}...)")


def download_mnist(
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    files: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    keep_partial: bool = True,
    verbose: bool = True,
) -> Path:
    """Make sure every file in ``files`` (default :data:`MNIST_FILES`) is in the cache, verified.

    A file already cached with the right SHA-256 is never downloaded again. Otherwise each mirror
    is tried in turn; ``timeout`` bounds each network operation, not the whole transfer. If every
    mirror fails for a file, raises DataError; with ``keep_partial=False`` the files and folder
    this call created are removed first, so a failed attempt leaves the cache as it was; folders
    this call created are removed whenever they end up empty.
    ``verbose`` logs a line per file downloaded.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    mirrors = MNIST_MIRRORS if mirrors is None else list(mirrors)
    files = MNIST_FILES if files is None else files
    made_dirs = [p for p in (cache, *cache.parents) if not p.exists()]
    created: list[Path] = []
    try:
        for fname, sha in files.items():
            dest = cache / fname
            if dest.is_file() and sha256_file(dest) == sha:
                continue
            cache.mkdir(parents=True, exist_ok=True)
            failures = []
            for base in mirrors:
                url = base if base.endswith("/") else base + "/"
                try:
                    _fetch(url + fname, dest, sha, timeout)
                except _FetchFailed as e:
                    failures.append(f"{url}: {e}")
                    continue
                created.append(dest)
                if verbose:
                    log.info(f"downloaded {fname} from {url}")
                break
            else:
                raise DataError(
                    f"{fname}: download failed from every mirror ({'; '.join(failures) or 'no mirrors'}); "
                    f"to use the files without downloading, put {', '.join(files)} in {cache} (or give --data-path DIR)"
                )
    except BaseException:
        if not keep_partial:
            for p in created:
                p.unlink(missing_ok=True)
        for d in made_dirs:  # innermost first; a folder that holds a verified file stays
            try:
                d.rmdir()
            except OSError:
                break
        raise
    return cache


def _brief(e: BaseException) -> str:
    reason = getattr(e, "reason", None)  # URLError wraps the useful part
    text = str(reason if reason is not None and not hasattr(e, "code") else e) or type(e).__name__
    return " ".join(text.split())
