"""``train(cfg, out_dir)``: orchestration only -- device, data, run folder, model, callbacks, then the Trainer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..accel.malloc import tune_malloc
from ..config import RunConfig
from ..data import Dataset, Prepared, prepare_data
from ..errors import CheckpointError
from ..models import build_model, count_parameters
from ..runs.folder import check_same_data, run_meta, start_run_folder
from ..runtime.distributed import barrier
from . import callbacks as cb
from .resolved import ResolvedRun, resolve_run, teardown
from .state import snapshot_epochs
from .trainer import Trainer

log = logging.getLogger("mnist_vae.training")

N_SNAPSHOT = 16  # fixed latent codes decoded after marked epochs


def train(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    figures: bool = True,
    dataset: Dataset | None = None,
    stop_after_steps: int | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the last epoch's metrics (plus totals and the run folder).

    ``resume=True`` continues the run in ``out_dir`` from its newest good checkpoint (``cfg`` may
    only change the fields :data:`~mnist_vae.config.RESUMABLE` names). ``dataset`` replaces loading the one the
    config names. ``stop_after_steps`` simulates an interruption (tests). ``tensorboard=True``
    also logs to ``RUN/tb/``. Under torchrun (``WORLD_SIZE`` > 1) this is data-parallel training,
    ``batch_size`` images per process; see :mod:`mnist_vae.runtime.distributed`.
    """
    tune_malloc()
    run = resolve_run(cfg, out_dir, resume=resume, force=force, tensorboard=tensorboard)
    try:
        dist, run_dir = run.dist, run.run_dir
        torch.manual_seed(run.seeds.weights)
        # One process per machine fills the dataset cache (a download, maybe) before the others read it.
        if dist.local_rank != 0:
            barrier(dist)
        data = prepare_data(run.cfg, run.device, dataset=dataset)  # bad data fails here, before anything is written
        if dist.local_rank == 0:
            barrier(dist)
        if run.checkpoint is not None:
            check_same_data(run_dir, data.dataset)  # before anything is written
        model = build_model(run.cfg, run.device)
        if dist.is_main:  # rank 0 claims the folder (or readies a resumed one); only its callbacks write into it
            meta = (
                None
                if run.resume
                else run_meta(run.cfg, data.dataset, count_parameters(model), run.threads, run.device, dist.world, run.plugins or {})
            )
            start_run_folder(run_dir, run.cfg, meta, run.replace)
        barrier(dist)  # rank 0 has claimed the folder before any process goes on
        callbacks = _callbacks(run, data, progress, figures, tensorboard) if dist.is_main else []
        trainer = Trainer(run, model, data, callbacks, stop_after_steps)
        if run.checkpoint is not None:
            log.info(f"resuming {run_dir} from {run.checkpoint.path.name} (epoch {trainer.state.epoch}, step {trainer.state.step})")
        elif run.resume:
            log.info(f"resuming {run_dir}: no checkpoint yet, starting from the beginning")
        processes = f" ({dist.world} processes, {run.cfg.train.batch_size} images each per step)" if dist.active else ""
        log.info(f"run folder: {run_dir}{processes}")
        trainer.fit()
        return _final(trainer, run_dir)
    finally:
        teardown(run)


def _callbacks(run: ResolvedRun, data: Prepared, progress: bool, figures: bool, tensorboard: bool) -> list[cb.Callback]:
    """Rank 0's callbacks, in the order they run: snapshots before the checkpoint that stores them."""
    cfg, ckpt = run.cfg, run.checkpoint
    fixed_z = torch.randn((N_SNAPSHOT, cfg.model.latent_dim), generator=torch.Generator().manual_seed(run.seeds.snapshot))
    fixed_z = fixed_z.to(data.train_x.device)
    out: list[cb.Callback] = [cb.ProgressBar()] if progress else []
    out += [cb.Snapshots(fixed_z, snapshot_epochs(cfg.train.epochs)), cb.Checkpoints(run.run_dir), cb.EpochLog()]
    if figures:
        out.append(cb.Figures(run.run_dir, data))
    if tensorboard:
        resumed_at = int(ckpt.trainer["state"]["epoch"]) + 1 if ckpt is not None else None
        out.append(cb.TensorBoard(run.run_dir, fixed_z, run.dist.world, resumed_at, cfg))
    return out


def _final(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    """The last epoch's record plus the run's totals."""
    history = trainer.state.history
    if not history:
        raise CheckpointError(f"{run_dir}: nothing was trained")
    seconds = trainer.state.seconds
    images = trainer.n_train * len(history)  # every epoch trains on every image once
    return {
        **history[-1],
        "total_train_seconds": round(seconds, 3),
        "run_dir": str(run_dir),
        "mean_images_per_second": round(images / seconds, 1) if seconds else float("nan"),
    }
