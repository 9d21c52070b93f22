"""What happens around the training loop, kept out of it: progress, logging, snapshots, checkpoints, figures.

The :class:`~mnist_vae.training.trainer.Trainer` calls each hook of each callback in list order;
on data-parallel runs only rank 0 gets callbacks, since they talk or write files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ..config import RunConfig
from ..runs.checkpoint import list_checkpoints, save_checkpoint
from ..runs.folder import write_metrics
from ..runtime.logging import Progress, progress
from .state import TrainState

if TYPE_CHECKING:
    from ..data import Prepared
    from ..models import VAE

log = logging.getLogger("mnist_vae.training")


class Trainer(Protocol):
    """What callbacks may read of the trainer (:class:`mnist_vae.training.trainer.Trainer`)."""

    cfg: RunConfig
    model: VAE
    state: TrainState
    n_train: int
    global_batch: int

    def checkpoint_contents(self, epoch_rng: torch.Tensor | None = None) -> dict[str, Any]: ...


class Callback:
    """Hooks the trainer calls; each is optional."""

    def on_epoch_begin(self, trainer: Trainer) -> None:
        """Before the first (or, when resumed mid-epoch, the next) step of an epoch."""

    def on_progress(self, trainer: Trainer, images: int, sums: dict[str, float]) -> None:
        """At each check point: ``images`` trained since the last one; running sums of the epoch so far."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After an epoch is trained, measured and added to ``trainer.state`` (whose ``epoch`` now counts it)."""

    def on_interrupt(self, trainer: Trainer, epoch_rng: torch.Tensor) -> None:
        """Training stops mid-epoch (signal or ``stop_after_steps``); ``epoch_rng`` is the data stream at the epoch's start."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch, when training succeeded."""

    def on_diverged(self, trainer: Trainer) -> str | None:
        """Training stops on a non-finite loss: what this callback kept, for the error message (None: nothing to say)."""
        return None

    def close(self) -> None:
        """Always, last: release files and displays."""


@torch.no_grad()
def decode_uint8(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Decode ``z`` in eval mode (the model's mode is restored): uint8 images [B, 28, 28] on the CPU."""
    was = model.training
    model.eval()
    try:
        return (model.decode_probs(z) * 255).round().to(torch.uint8).cpu()
    finally:
        model.train(was)


class ProgressBar(Callback):
    """A bar per epoch with loss, reconstruction, KL and images/second (a plain line now and then off a terminal)."""

    def __init__(self) -> None:
        self.bar: Progress | None = None
        self.t0 = 0.0

    def on_epoch_begin(self, trainer: Trainer) -> None:
        done = min(trainer.state.step * trainer.global_batch, trainer.n_train)
        self.bar = progress(trainer.n_train, f"epoch {trainer.state.epoch + 1}/{trainer.cfg.train.epochs}", initial=done)
        self.t0 = time.perf_counter()

    def on_progress(self, trainer: Trainer, images: int, sums: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(images)
        n = max(sums["images"], 1)
        seconds = sums["seconds"] + time.perf_counter() - self.t0
        self.bar.set_postfix(
            loss=f"{sums['loss'] / n:.2f}",
            recon=f"{sums['recon'] / n:.2f}",
            kl=f"{sums['kl'] / n:.2f}",
            img_s=f"{sums['images'] / max(seconds, 1e-9):.0f}",
            refresh=False,
        )

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.close()

    def on_interrupt(self, trainer: Trainer, epoch_rng: torch.Tensor) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EpochLog(Callback):
    """One line per epoch: train and test loss, test reconstruction and KL, images/second."""

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        log.info(
            f"epoch {record['epoch']:3d}/{trainer.cfg.train.epochs}  train {record['train_loss']:.2f}  test {record['test_loss']:.2f} "
            f"(recon {record['test_recon']:.2f}, KL {record['test_kl']:.2f})  {record['images_per_second']:.0f} img/s"
        )


class Snapshots(Callback):
    """The same fixed latent codes decoded after the marked epochs, kept in the run's state (and checkpoints)."""

    def __init__(self, z: torch.Tensor, epochs: list[int]) -> None:
        self.z, self.epochs = z, set(epochs)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record["epoch"] in self.epochs:
            trainer.state.snapshots[str(record["epoch"])] = decode_uint8(trainer.model, self.z)


class Checkpoints(Callback):
    """A checkpoint after every epoch and at a mid-epoch stop, and ``metrics.jsonl`` to match."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        save_checkpoint(self.run_dir, trainer.cfg, trainer.model, trainer.checkpoint_contents(), trainer.state.epoch, 0)
        write_metrics(self.run_dir, trainer.state.history)

    def on_interrupt(self, trainer: Trainer, epoch_rng: torch.Tensor) -> None:
        save_checkpoint(
            self.run_dir, trainer.cfg, trainer.model, trainer.checkpoint_contents(epoch_rng), trainer.state.epoch, trainer.state.step
        )

    def on_train_end(self, trainer: Trainer) -> None:
        write_metrics(self.run_dir, trainer.state.history)  # a run killed between its last checkpoint and this file

    def on_diverged(self, trainer: Trainer) -> str | None:
        saved = list_checkpoints(self.run_dir)
        return f"the last good checkpoint {saved[-1]} is kept" if saved else "no checkpoint had been written yet"


class TensorBoard(Callback):
    """Scalars and the fixed-z samples of every epoch into ``RUN/tb`` (``--tensorboard``)."""

    def __init__(self, run_dir: Path, z: torch.Tensor, processes: int, resumed_at: int | None, cfg: Any) -> None:
        from .tblog import TensorBoardLog

        self.run_dir, self.z = run_dir, z
        self.writer = TensorBoardLog(run_dir / "tb", cfg, processes=processes, purge_step=resumed_at)

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.writer.epoch(record, decode_uint8(trainer.model, self.z))

    def on_train_end(self, trainer: Trainer) -> None:
        log.info(f"tensorboard: tensorboard --logdir {self.run_dir / 'tb'}")

    def close(self) -> None:
        self.writer.close()


class Figures(Callback):
    """The five pictures of the run, drawn once training has finished."""

    def __init__(self, run_dir: Path, data: Prepared) -> None:
        self.run_dir, self.data = run_dir, data

    def on_train_end(self, trainer: Trainer) -> None:
        from ..viz.figures import write_run_figures

        write_run_figures(self.run_dir, trainer.model, trainer.state.history, trainer.state.snapshots, self.data, trainer.cfg)
