"""A Linear layer that can keep a bf16 copy of its weight for CPU bf16 training.

Under bf16 autocast, ``F.linear`` casts the fp32 weight to bf16 on every forward and autograd casts
the bf16 weight gradient back to fp32: for `original`'s 25088->784 output layer (19.7M weights)
those two passes over the weight cost about as much as the layer's three matrix products on one
core. With :meth:`Linear.keep_bf16_copy` the forward uses a bf16 copy instead, whose gradient stays
in bf16; the training step (``training/step.py``) converts it, updates the weight with the
optimizer's own fused kernel and refreshes the copy in cache-sized pieces, so neither cast makes
a separate trip through memory. The copy is the weight cast to bf16 exactly as autocast casts it
and the gradient is the one autocast's path computes, so the weights after every step are the
same bits (tests/test_bf16_copy.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Weights smaller than this gain nothing from a copy (the casts are cheap; the pieces cost calls).
MIN_COPIED_WEIGHTS = 1 << 20


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
