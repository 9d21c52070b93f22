"""The training loop: a :class:`Trainer` that resumes (its step restores), runs epochs of steps, and ends each epoch.

Read it top to bottom: :meth:`Trainer.fit` runs :meth:`~Trainer.run_epoch` until the configured
number of epochs is reached; an epoch draws its shuffle, takes step after step (:class:`~.step.TrainStep`),
and every few steps :meth:`~Trainer.check` s for a NaN loss or a stop request;
:meth:`~Trainer.end_epoch` measures the test ELBO and hands the record to the callbacks, which
write checkpoints, metrics, snapshots and pictures (see :mod:`.callbacks`). On an accelerator the
host synchronises only at those check points and at the end of each epoch.

Data-parallel runs (torchrun, ``WORLD_SIZE`` > 1) take the same steps in every process, each on
its share of the global batch; see :mod:`mnist_vae.runtime.distributed`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from ..accel.malloc import heap_only_malloc
from ..data import Prepared
from ..errors import TrainingDiverged
from ..losses import elbo, kl_weight
from ..models import VAE
from ..runs.checkpoint import (
    checkpoint_name,
)
from ..runtime.distributed import all_reduce_, barrier, broadcast, shard
from ..runtime.process import stop_signals
from .callbacks import Callback
from .resolved import ResolvedRun
from .state import TrainState
from .step import TrainStep

#: Steps between host synchronisations (NaN and stop checks) on an accelerator; every step on the CPU.
SYNC_EVERY = 50


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM (or ``stop_after_steps``) after saving a checkpoint; ``signum`` tells which."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted by signal {signum}; saved {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


class _EpochSums:
    """Running sums of one epoch on the device (float64), so a step needs no host synchronisation.

    ``terms`` holds [loss, recon, kl] summed over images; ``first_bad`` the first step whose loss
    was not finite (-1: none) and ``bad_value`` that loss.
    """

    def __init__(self, device: torch.device, start: dict[str, float] | None) -> None:
        start = start or {}
        self.terms = torch.tensor(
            [start.get("loss", 0.0), start.get("recon", 0.0), start.get("kl", 0.0)], dtype=torch.float64, device=device
        )
        self.images = int(start.get("images", 0))  # global: every process adds the global batch size
        self.images_here = 0  # this process's images in this call, for the progress display
        self.seconds = float(start.get("seconds", 0.0))
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_value = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, step: int, loss: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor, images: int) -> None:
        if not images:  # a zero-weight step of a process that got no image of a tiny last batch
            return
        self.images_here += images
        r, k = recon.detach().double() * images, kl.detach().double() * images
        self.terms += torch.stack([r + k, r, k])  # the un-warmed ELBO, comparable across epochs
        bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, step, self.first_bad)
        self.bad_value = torch.where(bad, loss.detach().double(), self.bad_value)

    def as_dict(self, terms: torch.Tensor, seconds: float) -> dict[str, float]:
        loss, recon, kl = terms.tolist()
        return {"loss": loss, "recon": recon, "kl": kl, "images": self.images, "seconds": seconds}


class Trainer:
    """One run's model, optimizer, data streams and state, and the loop that trains them."""

    def __init__(
        self, run: ResolvedRun, model: VAE, data: Prepared, callbacks: list[Callback], stop_after_steps: int | None = None
    ) -> None:
        """Build the step for ``run``'s model; a run that resumes continues from its checkpoint."""
        t, device, dist = run.cfg.train, run.device, run.dist
        self.cfg, self.model, self.data, self.device, self.dist, self.run_dir = run.cfg, model, data, device, dist, run.run_dir
        self.callbacks, self.stop_after_steps = callbacks, stop_after_steps
        self.net: torch.nn.Module = model
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.seeds = run.seeds
        self.data_rng = torch.Generator(device="cpu").manual_seed(self.seeds.data)
        self.state = TrainState()
        self.n_train = len(data.train_x)
        self.global_batch = t.batch_size * dist.world
        self.steps_per_epoch = math.ceil(self.n_train / self.global_batch)
        # A resumed run (its checkpoint checked at the entry, :func:`~mnist_vae.runs.folder.resume_point`) continues
        # from it: the step restores the weights, optimizer and random generators, the trainer its data stream and progress.
        ckpt = run.checkpoint
        self.take_step = TrainStep(self.net, model, t, device, total_steps=t.epochs * self.steps_per_epoch, resume=ckpt)
        self.optimizer, self.scaler = self.take_step.optimizer, self.take_step.scaler
        self.check_every = 1 if device.type == "cpu" else SYNC_EVERY
        self.steps_done = 0  # in this process's life, for stop_after_steps
        if ckpt is not None:
            self.data_rng.set_state(ckpt.trainer["data_rng"])
            self.state = TrainState.from_dict(ckpt.trainer["state"])

    def checkpoint_contents(self, epoch_rng: torch.Tensor | None = None) -> dict[str, Any]:
        """The trainer part of a checkpoint. Mid-epoch, ``epoch_rng`` is the data stream at the epoch's
        start: resume redraws the same permutation and skips the steps already done."""
        return {
            **self.take_step.state_dict(),  # optimizer, random generators, and the scaler and schedule where the run has them
            "data_rng": epoch_rng if epoch_rng is not None else self.data_rng.get_state(),
            "state": self.state.to_dict(),
            "world_size": self.dist.world,
        }

    # --- the loop --------------------------------------------------------------------------------

    def fit(self) -> None:
        """Train until ``cfg.train.epochs`` epochs are done; raises :class:`Interrupted` or :class:`TrainingDiverged`."""
        self.model.train()
        try:
            with stop_signals() as stop, heap_only_malloc():
                while self.state.epoch < self.cfg.train.epochs:
                    sums = self.run_epoch(stop)
                    self.end_epoch(sums)
            for cb in self.callbacks:
                cb.on_train_end(self)
        finally:
            for cb in self.callbacks:
                cb.close()

    def run_epoch(self, stop: dict[str, int]) -> dict[str, float]:
        """Train the rest of the current epoch; returns its global sums (loss, recon, kl, images, seconds)."""
        t, epoch = self.cfg.train, self.state.epoch
        epoch_rng = self.data_rng.get_state()
        perm = torch.randperm(self.n_train, generator=self.data_rng).to(self.device)
        train_x = self.data.train_x
        if t.binarize == "dynamic":
            train_x = torch.bernoulli(train_x.cpu(), generator=self.data_rng).to(self.device)
        start = self.state.partial if self.dist.is_main else {**(self.state.partial or {}), "loss": 0.0, "recon": 0.0, "kl": 0.0}
        sums = _EpochSums(self.device, start)
        for cb in self.callbacks:
            cb.on_epoch_begin(self)
        t0, since_check = time.perf_counter(), 0
        for step in range(self.state.step, self.steps_per_epoch):
            x, eps, mine, n_global = self.batch(train_x, perm, step)
            weight = kl_weight(t.beta, t.kl_warmup_epochs, epoch, step, self.steps_per_epoch)
            # The scale (images here × processes / images in the global batch) makes DDP's average
            # of the processes' gradients the gradient of the mean loss over the global batch.
            scale = mine * self.dist.world / n_global if self.dist.active else 1.0
            loss, recon, kl = self.take_step(x, eps, weight, scale)
            sums.add(step, loss, recon, kl, mine)
            sums.images += n_global
            since_check += n_global
            self.state.step, self.steps_done = step + 1, self.steps_done + 1
            if self.steps_done % self.check_every == 0 or step + 1 == self.steps_per_epoch or self.stop_requested_locally():
                self.check(sums, stop, epoch, epoch_rng, t0, since_check)
                since_check = 0
        seconds = sums.seconds + time.perf_counter() - t0
        return sums.as_dict(all_reduce_(sums.terms, self.dist), seconds)

    def batch(self, train_x: torch.Tensor, perm: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """This process's images of global step ``step``, their noise, and (images here, images in the global batch)."""
        global_idx = perm[step * self.global_batch : (step + 1) * self.global_batch]
        g, mine = len(global_idx), shard(len(global_idx), self.dist)
        idx = global_idx[mine]
        # Noise for the whole global batch, sliced like the images: the z a single process would draw.
        k, d = self.cfg.train.iwae_k, self.cfg.model.latent_dim
        eps = torch.randn((g, d), device=self.device)[mine] if k == 1 else torch.randn((k, g, d), device=self.device)[:, mine]
        if len(idx) == 0:  # fewer images than processes: a zero-weight step keeps DDP in lockstep
            return train_x[global_idx[:1]], torch.zeros((*eps.shape[:-2], 1, d), device=self.device), 0, g
        return train_x[idx], eps, len(idx), g

    def stop_requested_locally(self) -> bool:
        return self.stop_after_steps is not None and self.steps_done >= self.stop_after_steps

    def check(self, sums: _EpochSums, stop: dict[str, int], epoch: int, epoch_rng: torch.Tensor, t0: float, images: int) -> None:
        """The host looks at the device: stop on a non-finite loss or a stop request, report progress."""
        signum = stop.get("signum")
        flags = torch.tensor(
            [float(sums.first_bad >= 0), float(signum is not None or self.stop_requested_locally())],
            dtype=torch.float64,
            device=self.device,
        )
        bad, stopping = (v > 0 for v in all_reduce_(flags, self.dist).tolist())
        if bad:
            self.diverged(sums, epoch)
        if self.callbacks:
            shown = sums.as_dict(sums.terms, sums.seconds)
            shown["images"] = sums.images if not self.dist.active else sums.images_here
            for cb in self.callbacks:
                cb.on_progress(self, images, shown)
        if stopping:
            self.state.partial = sums.as_dict(all_reduce_(sums.terms.clone(), self.dist), sums.seconds + time.perf_counter() - t0)
            for cb in self.callbacks:
                cb.on_interrupt(self, epoch_rng)
            barrier(self.dist)  # the checkpoint is complete before any process exits
            raise Interrupted(signum or 0, self.run_dir / "checkpoints" / checkpoint_name(epoch, self.state.step))

    def diverged(self, sums: _EpochSums, epoch: int) -> None:
        kept = "; ".join(said for cb in self.callbacks if (said := cb.on_diverged(self))) or "its checkpoints are kept"
        for cb in self.callbacks:
            cb.close()
        step, value = int(sums.first_bad), float(sums.bad_value)
        shown = value if step >= 0 and not math.isfinite(value) else float("nan")
        where = f"batch {step + 1}" if step >= 0 else "a batch of another process"
        raise TrainingDiverged(
            f"loss became {shown} at epoch {epoch + 1}, {where}; {kept}; "
            f"try a lower learning rate in a new run (e.g. --set lr={self.cfg.train.lr / 10:g})"
        )

    def end_epoch(self, sums: dict[str, float]) -> None:
        """Measure the test ELBO, record the epoch and hand it to the callbacks."""
        t, epoch = self.cfg.train, self.state.epoch
        test = None
        if self.dist.is_main:  # the other processes would compute the same numbers
            # Measured in fp32 whatever the training precision, so test figures compare across precisions.
            gen = torch.Generator(device=self.device).manual_seed(self.seeds.test_elbo(epoch))
            test = elbo(self.model, self.data.test_x, t.eval_batch_size, gen)
        test = broadcast(test, self.dist)
        n, seconds = sums["images"], sums["seconds"]
        record = {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / n,
            "train_recon": sums["recon"] / n,
            "train_kl": sums["kl"] / n,
            "test_loss": test["loss"],
            "test_recon": test["recon"],
            "test_kl": test["kl"],
            "kl_weight": kl_weight(t.beta, t.kl_warmup_epochs, epoch, self.steps_per_epoch, self.steps_per_epoch),
            "train_seconds": round(seconds, 4),
            "images_per_second": round(n / seconds, 1),
        }
        self.state.history.append(record)
        self.state.seconds += seconds
        self.state.epoch, self.state.step, self.state.partial = epoch + 1, 0, None
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
