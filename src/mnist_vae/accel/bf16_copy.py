"""A Linear layer that can keep a bf16 copy of its weight for CPU bf16 training.

Under bf16 autocast, ``F.linear`` casts the fp32 weight to bf16 on every forward and autograd casts
the bf16 weight gradient back to fp32: for `original`'s 25088->784 output layer (19.7M weights)
those two passes over the weight are a large part of the layer's time (docs/performance.md). With :meth:`Linear.keep_bf16_copy` the forward uses a bf16 copy instead, whose gradient stays
in bf16; the training step (``training/step.py``) hands it to :func:`update_through_copy`, which
converts it, updates the weight with the optimizer's own fused kernel and refreshes the copy in
cache-sized pieces, so neither cast makes a separate trip through memory. The copy is the weight cast to bf16 exactly as autocast casts it
and the gradient is the one autocast's path computes, so the weights after every step are the
same bits (tests/test_bf16_copy.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import private_api

#: Weights smaller than this gain nothing from a copy (the casts are cheap; the pieces cost calls).
MIN_COPIED_WEIGHTS = 1 << 20
#: Elements of a weight updated and copied at a time, per thread: a piece's weight, moments,
#: gradient and copy (18 bytes an element) stay in the cores' L2 caches between the update and the cast.
PIECE = 1 << 16


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, initialisation and state dict) with an optional bf16 weight copy."""

    bf16_copy: torch.Tensor | None = None
    #: The weight's version counter when the copy was made: any other change to the weight (a
    #: checkpoint loaded into it) makes the copy stale, and the next forward makes it afresh.
    copy_version: int = -1

    def keep_bf16_copy(self) -> None:
        """Use a bf16 copy of the weight in training forwards under CPU bf16 autocast (its gradient goes to the copy)."""
        self.bf16_copy = torch.empty_like(self.weight, dtype=torch.bfloat16).requires_grad_(True)
        self.copy_version = -1

    def drop_bf16_copy(self) -> None:
        """Back to the plain layer."""
        self.bf16_copy, self.copy_version = None, -1

    def copy_is_used(self, x: torch.Tensor) -> bool:
        """Whether this forward goes through the copy (a copy, CPU bf16 autocast, gradients on)."""
        return (
            self.bf16_copy is not None
            and x.device.type == "cpu"
            and torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )

    def refresh_copy(self) -> None:
        """Make the copy the weight cast to bf16 (what autocast would use)."""
        assert self.bf16_copy is not None
        with torch.no_grad():
            self.bf16_copy.copy_(self.weight)
        self.copy_version = self.weight._version

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.copy_is_used(x):
            return super().forward(x)
        assert self.bf16_copy is not None
        if self.copy_version != self.weight._version:
            self.refresh_copy()
        return F.linear(x, self.bf16_copy, self.bias)


def _fused_update(group: dict) -> Any:
    """The optimizer's fused kernel for a parameter group (None: this torch lacks it)."""
    if group.get("decoupled_weight_decay"):
        return private_api(torch, "_fused_adamw_", "torch._fused_adamw_")
    return private_api(torch, "_fused_adam_", "torch._fused_adam_")


def keep_bf16_copies(model: nn.Module, optimizer: torch.optim.Optimizer, on: bool) -> list[Linear]:
    """Give ``model``'s large layers a bf16 weight copy where the step can update through it; returns those layers.

    ``on``: the step runs CPU bf16 autocast in one process, through the model's own forward (DDP
    reduces the weights' own gradients). The optimizer must be the fused Adam/AdamW the program
    makes, without amsgrad or a tensor learning rate, and this torch must have the fused kernel and
    the tensor version counter (:func:`~mnist_vae.accel.private_api`); otherwise no layer keeps a copy.
    """
    groups = optimizer.param_groups
    usable = (
        on
        and all(g.get("fused") and not g["amsgrad"] and not g["maximize"] and not torch.is_tensor(g["lr"]) for g in groups)
        and all(_fused_update(g) is not None for g in groups)
        and private_api(torch.Tensor, "_version", "Tensor._version") is not None
    )
    layers = [m for m in model.modules() if isinstance(m, Linear) and m.weight.numel() >= MIN_COPIED_WEIGHTS]
    for m in layers:
        if usable:
            m.keep_bf16_copy()
        else:
            m.drop_bf16_copy()
    return layers if usable else []


def update_through_copy(optimizer: torch.optim.Optimizer, layer: Linear) -> None:
    """The optimizer's fused update of ``layer.weight`` from the bf16 copy's gradient, refreshing the copy.

    The same arithmetic as ``optimizer.step()`` on the weight with the gradient autocast would
    have cast to fp32 (the same kernel, element by element), done a piece at a time so that the
    gradient's conversion, the update and the new copy share one trip through memory. The
    optimizer's state for the weight is its own (``optimizer.state``), so checkpoints are unchanged.
    """
    copy, w = layer.bf16_copy, layer.weight
    if copy is None or copy.grad is None:
        return
    group = next(g for g in optimizer.param_groups if any(p is w for p in g["params"]))
    state = optimizer.state[w]
    if not state:  # as torch's Adam initialises it (fused: a float32 step on the weight's device)
        state["step"] = torch.zeros((), dtype=torch.float32, device=w.device)
        state["exp_avg"] = torch.zeros_like(w, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(w, memory_format=torch.preserve_format)
    step = state["step"]
    step.add_(1)
    update = _fused_update(group)
    beta1, beta2 = group["betas"]
    flat = [x.detach().view(-1) for x in (w, copy.grad, state["exp_avg"], state["exp_avg_sq"], copy)]
    piece = PIECE * torch.get_num_threads()  # the fused kernel splits each piece among the threads
    with torch.no_grad():
        for i in range(0, w.numel(), piece):
            p, g, m, v, c = (x[i : i + piece] for x in flat)
            update([p], [g.float()], [m], [v], [], [step], amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                   weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)  # fmt: skip
            c.copy_(p)
    layer.copy_version = w._version
    copy.grad = None
