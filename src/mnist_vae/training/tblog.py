"""TensorBoard logging of a run (``--tensorboard``): scalars, the sample grid and the hyper-parameters.

Written to ``RUN/tb/`` with ``torch.utils.tensorboard`` (needs the optional ``tensorboard``
package). Event files are append-only logs written by TensorBoard's own writer, not through
:mod:`mnist_vae.io`; TensorBoard skips a record cut short by a crash, and a resumed run passes
``purge_step`` so that epochs logged after the checkpoint it resumes from are dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..errors import ConfigError
from ..viz.tiles import tile

SCALARS = {  # tag -> key in the epoch record
    "train/loss": "train_loss",
    "train/recon": "train_recon",
    "train/kl": "train_kl",
    "test/loss": "test_loss",
    "test/recon": "test_recon",
    "test/kl": "test_kl",
    "train/kl_weight": "kl_weight",
    "train/images_per_second": "images_per_second",
}


def require_tensorboard() -> None:
    """Raise a one-line :class:`ConfigError` when the optional tensorboard package is missing."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (imports the tensorboard package)
    except ImportError:
        raise ConfigError("--tensorboard: the tensorboard package is not installed; run: pip install 'mnist-vae[tensorboard]'") from None


def hparams_of(cfg: RunConfig, processes: int = 1) -> dict[str, Any]:
    """The config flattened to the scalar types TensorBoard's HParams plugin accepts."""
    d = cfg.to_dict()
    out: dict[str, Any] = {"config": cfg.name, "processes": processes}
    for section in ("model", "train"):
        for k, v in d[section].items():
            out[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def grid(images: torch.Tensor, ncols: int = 4, pad: int = 2) -> torch.Tensor:
    """[N, 28, 28] uint8 or float images -> one [1, H, W] float image in [0, 1] (white padding)."""
    return torch.from_numpy(tile(images, ncols, pad=pad, fill=1.0)).unsqueeze(0)


class TensorBoardLog:
    """One writer per run; :meth:`epoch` logs an epoch's record and its sample grid at step = epoch."""

    def __init__(self, log_dir: Path, cfg: RunConfig, processes: int = 1, purge_step: int | None = None) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        # Written once, at the start, into the same folder as the scalars: the HParams dashboard
        # then shows each metric tag's latest value, so an unfinished run still appears.
        for summary in hparams(hparams_of(cfg, processes), {tag: 0.0 for tag in SCALARS if tag.startswith("test/")}):
            writer = self.writer.file_writer
            assert writer is not None  # created by SummaryWriter.__init__
            writer.add_summary(summary)

    def epoch(self, record: dict[str, Any], samples: torch.Tensor) -> None:
        """Scalars of one finished epoch, and the fixed-z samples decoded after it."""
        step = int(record["epoch"])
        for tag, key in SCALARS.items():
            self.writer.add_scalar(tag, float(record[key]), step)
        self.writer.add_image("samples/fixed_z", grid(samples), step, dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
