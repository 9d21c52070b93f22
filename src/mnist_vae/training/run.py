"""``train(cfg, out_dir)``: orchestration only -- device, data, run folder, model, callbacks, then the Trainer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data import Dataset, Prepared, prepare_data
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_text
from ..models import VAE, count_parameters
from ..runs.checkpoint import Checkpoint, latest_checkpoint
from ..runs.folder import check_run_dir, check_same_data, claim_run_dir, new_run_dir, prepare_resume, read_run_config, run_meta
from ..runtime.device import resolve_device, resolve_precision
from ..runtime.distributed import DistInfo, auto_device_for_processes, barrier, broadcast, threads_per_process
from ..runtime.distributed import setup as setup_distributed
from ..runtime.distributed import teardown as teardown_distributed
from ..runtime.logging import set_rank
from ..runtime.process import set_threads, tune_malloc
from . import callbacks as cb
from .state import check_resume, snapshot_epochs
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
    only change ``train.epochs`` and ``train.threads``). ``dataset`` replaces loading the one the
    config names. ``stop_after_steps`` simulates an interruption (tests). ``tensorboard=True``
    also logs to ``RUN/tb/``. Under torchrun (``WORLD_SIZE`` > 1) this is data-parallel training,
    ``batch_size`` images per process; see :mod:`mnist_vae.runtime.distributed`.
    """
    tune_malloc()
    device = resolve_device(cfg.train.device)
    if cfg.train.device == "auto":
        device = auto_device_for_processes(device)  # two processes cannot share one GPU under NCCL
    precision = resolve_precision(cfg.train.precision, device)
    if precision == "fp16" and device.type == "cpu":
        # oneDNN has no float16 LSTM kernel ("could not create a primitive descriptor").
        raise ConfigError("precision: fp16 is not supported on the CPU (no fp16 LSTM kernel); use bf16 there, or fp16 on cuda/mps")
    dist, device = setup_distributed(device)
    set_rank(dist.rank)
    try:
        if precision != cfg.train.precision:
            why = f"native bf16 on this {device.type}" if precision == "bf16" else "no native bf16 here"
            log.info(f"precision: auto -> {precision} ({why})")
            cfg = cfg.replace(precision=precision)  # the run records what it ran with
        return _train(
            cfg,
            out_dir,
            device,
            dist,
            resume=resume,
            force=force,
            progress=progress,
            figures=figures,
            dataset=dataset,
            stop_after_steps=stop_after_steps,
            tensorboard=tensorboard,
        )
    finally:
        teardown_distributed(dist)


def _train(
    cfg: RunConfig,
    out_dir: str | Path | None,
    device: torch.device,
    dist: DistInfo,
    *,
    resume: bool,
    force: bool,
    progress: bool,
    figures: bool,
    dataset: Dataset | None,
    stop_after_steps: int | None,
    tensorboard: bool,
) -> dict[str, Any]:
    t = cfg.train
    # Errors the user can cause are raised by every process alike, before any of them waits on
    # the others, so all exit with the same one-line message instead of hanging.
    if tensorboard:
        from .tblog import require_tensorboard

        require_tensorboard()  # fail before touching the run folder
    # Rank 0 picks the folder: a timestamped default could differ by a second between processes.
    run_dir = Path(broadcast(str(new_run_dir(cfg, out_dir)), dist))
    threads = set_threads(threads_per_process(t.threads, dist))
    ckpt = _resume_point(run_dir, cfg) if resume else None
    if not resume:
        check_run_dir(run_dir, force)  # before loading data, so a bad --out fails at once
    torch.manual_seed(t.seed)
    # One process per machine fills the dataset cache (a download, maybe) before the others read it.
    if dist.local_rank != 0:
        barrier(dist)
    data = prepare_data(cfg, device, dataset=dataset)  # bad data fails here, before anything is written
    if dist.local_rank == 0:
        barrier(dist)
    model = VAE(cfg.model).to(device)
    model.channels_last = t.channels_last
    if dist.is_main:
        if resume:
            prepare_resume(run_dir)
            atomic_write_text(run_dir / "config.toml", cfg.to_toml())  # records a changed epoch count
        else:
            claim_run_dir(run_dir, cfg, run_meta(cfg, data.dataset, count_parameters(model), threads, device, dist.world), force)
    barrier(dist)  # nobody touches the folder before rank 0 has claimed it
    callbacks = _callbacks(cfg, run_dir, data, dist, ckpt, progress, figures, tensorboard) if dist.is_main else []
    trainer = Trainer(cfg, model, data, device, dist, run_dir, callbacks, stop_after_steps)
    if ckpt is not None:
        trainer.restore(ckpt)
        check_same_data(run_dir, data.dataset)
        log.info(f"resuming {run_dir} from {ckpt.path.name} (epoch {trainer.state.epoch}, step {trainer.state.step})")
    elif resume:
        log.info(f"resuming {run_dir}: no checkpoint yet, starting from the beginning")
    log.info(f"run folder: {run_dir}" + (f" ({dist.world} processes, {t.batch_size} images each per step)" if dist.active else ""))
    trainer.fit()
    return _final(trainer, run_dir)


def _resume_point(run_dir: Path, cfg: RunConfig) -> Checkpoint | None:
    """The newest good checkpoint of the run in ``run_dir`` (None: none yet), after checking ``cfg`` may continue it."""
    saved = read_run_config(run_dir)
    check_resume(run_dir, saved, cfg)
    ckpt = latest_checkpoint(run_dir)
    check_resume(run_dir, saved, cfg, ckpt)
    return ckpt


def _callbacks(
    cfg: RunConfig, run_dir: Path, data: Prepared, dist: DistInfo, ckpt: Checkpoint | None, progress: bool, figures: bool, tensorboard: bool
) -> list[cb.Callback]:
    """Rank 0's callbacks, in the order they run: snapshots before the checkpoint that stores them."""
    fixed_z = torch.randn((N_SNAPSHOT, cfg.model.latent_dim), generator=torch.Generator().manual_seed(cfg.train.seed + 1))
    fixed_z = fixed_z.to(data.train_x.device)
    out: list[cb.Callback] = [cb.ProgressBar()] if progress else []
    out += [cb.Snapshots(fixed_z, snapshot_epochs(cfg.train.epochs)), cb.Checkpoints(run_dir), cb.EpochLog()]
    if figures:
        out.append(cb.Figures(run_dir, data))
    if tensorboard:
        resumed_at = int(ckpt.trainer["state"]["epoch"]) + 1 if ckpt is not None else None
        out.append(cb.TensorBoard(run_dir, fixed_z, dist.world, resumed_at, cfg))
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
