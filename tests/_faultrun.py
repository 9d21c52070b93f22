"""Run the ``mnist-vae`` CLI with one fault injected; test-only, never imported by the package.

Usage: ``MNIST_VAE_TEST_FAULT=KIND:N python tests/_faultrun.py train ...`` (same arguments as
``python -m mnist_vae``). The process kills itself with SIGKILL -- exactly what an external
``kill -9`` does: no handler, no cleanup -- at the N-th occurrence of KIND:

=============  ======================================================================================
step           entering the N-th optimizer step (forward and backward done, weights not yet updated)
sigint         the N-th optimizer step sends SIGINT to the process (not a kill: training goes on to
sigterm        save a mid-epoch checkpoint and exit 130 / 143)
ckpt-model     in the N-th checkpoint write, right after model.safetensors is flushed in the temp folder
ckpt-trainer   ... right after trainer.pt is flushed (no manifest yet)
ckpt-manifest  ... right after manifest.json is in place (temp folder complete, not yet renamed)
ckpt-renamed   ... right after the rename, before old checkpoints are pruned
ckpt-prune     ... half-way through deleting the oldest checkpoint (its weights gone, the rest not)
metrics        with metrics.jsonl's temporary file written, before it replaces the old one
figure         with the N-th end-of-run figure's temporary PNG written, before its rename
claim-tmp      claiming the run folder: its temporary copy complete (run.json written), not yet renamed
claim-renamed  claiming the run folder: right after the rename that makes it appear
=============  ======================================================================================

Every hook only observes: the product code runs unchanged until the kill.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from pathlib import Path

KIND, _, _N = os.environ.get("MNIST_VAE_TEST_FAULT", "none:0").partition(":")
N = int(_N or 1)
_count = {"n": 0}
_CKPT = re.compile(r"^E\d{4,}-S\d{5,}$")


def _hit() -> bool:
    _count["n"] += 1
    return _count["n"] == N


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def install() -> None:
    """Wrap the library functions the chosen KIND watches."""
    if KIND in ("step", "sigint", "sigterm"):
        import torch

        original_step = torch.optim.Adam.step

        def step(self, *args, **kwargs):
            if _hit():
                if KIND == "step":
                    _die()
                os.kill(os.getpid(), signal.SIGINT if KIND == "sigint" else signal.SIGTERM)
            return original_step(self, *args, **kwargs)

        torch.optim.Adam.step = step
    elif KIND in ("ckpt-model", "ckpt-trainer"):
        original_fsync = os.fsync
        target = "model.safetensors" if KIND == "ckpt-model" else "trainer.pt"

        def fsync(fd):
            original_fsync(fd)
            path = Path(_fd_path(fd))
            if path.name == target and path.parent.name.startswith(".tmp-") and _hit():
                _die()

        os.fsync = fsync
    elif KIND in ("ckpt-manifest", "ckpt-renamed", "metrics", "claim-tmp", "claim-renamed"):
        original_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            src, dst_p = Path(src), Path(dst)
            if KIND == "metrics" and dst_p.name == "metrics.jsonl" and _hit():
                _die()
            original_replace(src, dst, *args, **kwargs)
            if KIND == "ckpt-manifest" and dst_p.name == "manifest.json" and dst_p.parent.name.startswith(".tmp-") and _hit():
                _die()
            if KIND == "ckpt-renamed" and src.name.startswith(".tmp-") and _CKPT.match(dst_p.name) and _hit():
                _die()
            if KIND == "claim-tmp" and dst_p.name == "run.json" and ".tmp-" in dst_p.parent.name and _hit():
                _die()
            if KIND == "claim-renamed" and src.name.startswith(f".{dst_p.name}.tmp-") and _hit():
                _die()

        os.replace = replace
    elif KIND == "ckpt-prune":
        original_rmtree = shutil.rmtree

        def rmtree(path, *args, **kwargs):
            p = Path(path)
            if _CKPT.match(p.name) and p.parent.name == "checkpoints" and _hit():
                (p / "model.safetensors").unlink()
                _die()
            return original_rmtree(path, *args, **kwargs)

        shutil.rmtree = rmtree
    elif KIND == "figure":
        from matplotlib.figure import Figure

        original_savefig = Figure.savefig

        def savefig(self, *args, **kwargs):
            original_savefig(self, *args, **kwargs)
            if _hit():
                _die()

        Figure.savefig = savefig
    elif KIND != "none":
        raise SystemExit(f"_faultrun: unknown fault kind {KIND!r}")


if __name__ == "__main__":
    install()
    from mnist_vae.cli import main

    sys.exit(main(sys.argv[1:]))
