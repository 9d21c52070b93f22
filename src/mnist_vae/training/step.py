"""One training step, the only one in the program: forward, loss, backward, optimizer and schedule.

The :class:`~mnist_vae.training.trainer.Trainer` takes its steps through a :class:`TrainStep`, and
the study's cost model (``study/cost.py``) times the same object, so an estimate measures the
optimizer, gradient scaler, precision and loss of the run it predicts. The benchmark's reference
loop (``bench/loops.py``) stays deliberately plain and is not built on this.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import torch

from ..accel.bf16_copy import keep_bf16_copies, update_through_copy
from ..config import TrainConfig
from ..errors import ConfigError
from ..losses import elbo_terms, iwae_terms
from ..runs.checkpoint import Checkpoint, load_model_weights
from ..runtime.device import autocast_for, device_rng_state, set_device_rng_state


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    """Adam (AdamW when ``weight_decay`` > 0), fused into one kernel where the device supports it."""
    cls = torch.optim.AdamW if t.weight_decay > 0 else torch.optim.Adam
    kwargs: dict[str, Any] = {"lr": t.lr, "weight_decay": t.weight_decay} if t.weight_decay > 0 else {"lr": t.lr}
    try:
        return cls(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # a device or torch version without the fused kernel
        return cls(model.parameters(), **kwargs)


def _cosine(step: int, total: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def make_schedule(optimizer: torch.optim.Optimizer, t: TrainConfig, total_steps: int) -> Any:
    """The per-step learning-rate schedule ``t.lr_schedule`` names over ``total_steps`` steps (None: constant)."""
    if t.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _cosine(s, total_steps))
    if t.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.max_lr, total_steps=total_steps)
    return None


class TrainStep:
    """The model's training step with its optimizer, gradient scaler (fp16), autocast and schedule.

    ``net`` is what the forward runs through (the model, or its DDP wrapper); ``model`` owns the
    parameters. ``total_steps`` is the length of the run, for the schedule. ``resume``: a checkpoint
    (checked at the run's entry) whose weights, optimizer, scaler, schedule and random generators
    the step continues from.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        model: torch.nn.Module,
        t: TrainConfig,
        device: torch.device,
        total_steps: int,
        resume: Checkpoint | None = None,
    ) -> None:
        self.net, self.t, self.total_steps, self.device = net, t, total_steps, device
        self.optimizer = make_optimizer(model, t)
        self.schedule = make_schedule(self.optimizer, t, total_steps)
        # fp16 scales the loss so small gradients survive; the default start, 2**16, makes this loss
        # (hundreds of nats per image) overflow for the first ~10 steps, each of which is then skipped.
        self.scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10) if t.precision == "fp16" else None
        if resume is not None:  # before the bf16 copies, so that they are made of the restored weights
            self.restore(resume, model)
        self.autocast = autocast_for(t.precision, device)
        self.copied = keep_bf16_copies(model, self.optimizer, on=t.precision == "bf16" and device.type == "cpu" and net is model)

    def __call__(
        self, x: torch.Tensor, eps: torch.Tensor, kl_w: float, scale: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch ``x`` with noise ``eps`` ([B, D], or [K, B, D] for the IWAE bound).

        Returns (loss, recon, kl) as device tensors; recon and KL are the ELBO's terms (means over
        the batch), whatever the loss. ``scale`` multiplies the loss (DDP's share of the global batch).
        """
        with self.autocast or nullcontext():
            logits, mu, logvar = self.net(x, eps)
        if eps.dim() == 3:
            loss, recon, kl = iwae_terms(logits, x, mu, logvar, eps, beta=kl_w)
        else:
            loss, recon, kl = elbo_terms(logits, x, mu, logvar, beta=kl_w, free_bits=self.t.free_bits)
        if scale != 1.0:
            loss = loss * scale
        self.optimizer.zero_grad(set_to_none=True)  # (a copy's gradient is cleared by its update)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            for layer in self.copied:
                update_through_copy(self.optimizer, layer)
            self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss, recon, kl

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, scaler and schedule state, and the random generators the steps draw from, for a checkpoint."""
        out: dict[str, Any] = {"optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            out["scaler"] = self.scaler.state_dict()
        if self.schedule is not None:
            out["schedule"], out["schedule_steps"] = self.schedule.state_dict(), self.total_steps
        out["torch_rng"] = torch.get_rng_state()
        device_rng = device_rng_state(self.device)
        if device_rng is not None:  # the reparameterisation noise and dropout come from the device's generator
            out["device_rng"], out["device_type"] = device_rng, self.device.type
        return out

    def restore(self, ckpt: Checkpoint, model: torch.nn.Module) -> None:
        """Continue from ``ckpt``: what :meth:`state_dict` saved (a schedule only over a run of the same length), and ``model``'s weights."""
        state = ckpt.trainer
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.schedule is not None and "schedule" in state:
            saved = state.get("schedule_steps", self.total_steps)
            if saved != self.total_steps:
                raise ConfigError(
                    f"epochs: lr_schedule = {self.t.lr_schedule!r} was laid out over {saved} steps; "
                    f"a scheduled run cannot be extended or shortened on resume"
                )
            self.schedule.load_state_dict(state["schedule"])
        load_model_weights(model, ckpt.weights, ckpt.path / "model.safetensors")
        torch.set_rng_state(state["torch_rng"])
        if "device_rng" in state and state.get("device_type") == self.device.type:
            set_device_rng_state(self.device, state["device_rng"])
