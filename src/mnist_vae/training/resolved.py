"""One training run resolved once, at the entry: everything below reads it and derives nothing again.

:func:`resolve_run` settles the run folder, the plugins that build the model, the device and
precision, the processes of a data-parallel run, the thread count, the configuration as it will run
and where a resume starts, and checks each once, in that order: each step uses only what the ones
before it settled, so the resolution goes down the layers (run folder, models, runtime) and back to
the run folder once, to check a resume against the configuration as it will run. The
:class:`ResolvedRun` it gives is immutable: the trainer, its step and its callbacks take it as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..errors import ConfigError
from ..models.registry import plugin_records
from ..runs.checkpoint import Checkpoint
from ..runs.folder import check_run_dir, new_run_dir, resume_point
from ..runtime.device import resolve_device, resolve_precision
from ..runtime.distributed import DistInfo, auto_device_for_processes, broadcast, threads_per_process
from ..runtime.distributed import setup as setup_distributed
from ..runtime.distributed import teardown as teardown_distributed
from ..runtime.logging import set_rank
from ..runtime.process import set_threads
from ..seeds import Seeds
from .tblog import require_tensorboard

log = logging.getLogger("mnist_vae.training")


@dataclass(frozen=True)
class ResolvedRun:
    """A run as it will train: config (precision resolved), device, processes, folder, threads, seeds, resume point."""

    cfg: RunConfig
    device: torch.device
    run_dir: Path
    dist: DistInfo = field(default_factory=DistInfo)
    threads: int = 1
    resume: bool = False
    checkpoint: Checkpoint | None = None  # where a resume starts; None: from the beginning
    replace: bool = False  # the folder holds a run that --force replaces
    #: The plugins that build a new run's model, as its meta.json records them; None for a resumed
    #: run, whose meta.json holds them already (:func:`~mnist_vae.runs.folder.resume_point` checks they are installed).
    plugins: dict[str, dict[str, Any]] | None = None

    @property
    def seeds(self) -> Seeds:
        """Every random stream of the run, from ``train.seed``."""
        return Seeds(self.cfg.train.seed)


def resolve_run(
    cfg: RunConfig, out_dir: str | Path | None = None, *, resume: bool = False, force: bool = False, tensorboard: bool = False
) -> ResolvedRun:
    """Settle and check everything a run needs, before any data is read or anything written.

    The processes of a data-parallel run meet here (the caller ends with :func:`teardown`, which
    this does itself when it fails). Errors the user can cause are raised by every process alike,
    before any of them waits on the others, so all exit with the same one-line message instead of hanging.
    """
    picked = new_run_dir(cfg, out_dir)
    plugins = None if resume else plugin_records(cfg.model)  # an unknown kind stops here, before anything else
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
        if tensorboard:
            require_tensorboard()  # fail before touching the run folder
        threads = set_threads(threads_per_process(cfg.train.threads, dist))
        # Rank 0 picks the folder: a timestamped default could differ by a second between processes.
        run_dir = Path(broadcast(str(picked), dist))
        if precision != cfg.train.precision:
            why = f"native bf16 on this {device.type}" if precision == "bf16" else "no native bf16 here"
            log.info(f"precision: auto -> {precision} ({why})")
            # The run records what it ran with: its config, copied once with the precision auto became.
            cfg = replace(cfg, train=replace(cfg.train, precision="bf16" if precision == "bf16" else "fp32"))
        replaces = False if resume else check_run_dir(run_dir, force)  # before loading data, so a bad --out fails at once
        checkpoint = resume_point(run_dir, cfg, dist.world) if resume else None
    except BaseException:
        teardown_distributed(dist)
        raise
    return ResolvedRun(cfg, device, run_dir, dist, threads, resume, checkpoint, replaces, plugins)


def teardown(run: ResolvedRun) -> None:
    """The processes of a data-parallel run part (nothing for one process)."""
    teardown_distributed(run.dist)
