"""The built-in decoder p(x|z) (``decoder = "conv"``): dense layers, a reshape, transposed convolutions, 28x28 Bernoulli logits.

It registers through the model registry (models/registry.py), as a plugin's decoder does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..accel.bf16_copy import Linear
from ..accel.convt import conv_transpose_same
from ..kinds import IMAGE_SIZE, ConvOptions
from .registry import register


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU masks come from uniform draws (``rand < keep``) instead of ``bernoulli_``.

    The same distribution (each unit kept with probability 1 − p, kept units scaled by 1/(1 − p)),
    another random stream: ``bernoulli_`` costs several times more per element on the CPU, which
    made mask drawing a sizeable part of a step for the presets with dropout (docs/performance.md).
    Elsewhere, and in eval mode, it is ``nn.Dropout``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.p > 0 and x.device.type == "cpu"):
            return super().forward(x)
        keep = torch.rand(x.shape, dtype=x.dtype, device=x.device).lt_(1 - self.p)
        return x * keep.mul_(1 / (1 - self.p))


class Decoder(nn.Module):
    """z [B, latent_dim] -> logits [B, 1, 28, 28].

    ``channels_last`` only changes the memory layout the convolutions run in (often faster on
    CPUs); the weights and results are the same either way.
    """

    def __init__(self, latent_dim: int, options: ConvOptions, channels_last: bool = False) -> None:
        super().__init__()
        self.options = o = options
        self.channels_last = channels_last
        p_hidden = o.dropout if o.dropout_where == "every-hidden" else 0.0
        dense: list[nn.Module] = []
        width = latent_dim
        for units in o.dense:
            # In-place ReLUs: the layers before them do not keep their outputs for backward, and
            # skipping an allocation per activation makes a training step ~3% faster on CPU.
            dense += [nn.Linear(width, units), nn.ReLU(inplace=True)]
            if p_hidden:
                dense.append(Dropout(p_hidden))
            width = units
        self.dense = nn.Sequential(*dense)

        convs: list[nn.Module] = []
        channels, n = o.reshape[0], len(o.convs)
        for i, (out_ch, stride) in enumerate(o.convs):
            convs.append(conv_transpose_same(channels, out_ch, stride, o.kernel_size))
            if not (o.head == "conv" and i == n - 1):  # the output layer stays linear: it gives logits
                convs.append(nn.ReLU(inplace=True))
                between_convs = o.dropout_where == "between-convs" and i < n - 1
                if o.dropout and (p_hidden or between_convs):
                    convs.append(Dropout(o.dropout))
            channels = out_ch
        self.convs = nn.Sequential(*convs)

        self.head: nn.Module = nn.Identity()
        if o.head == "dense":  # the published code: flatten the feature maps into a dense layer
            c, h, w = o.output_shape()
            self.head = nn.Sequential(nn.Flatten(), Linear(c * h * w, IMAGE_SIZE * IMAGE_SIZE))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(z)
        h = h.unflatten(1, self.options.reshape)  # [B, C·H·W] -> [B, C, H, W]
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = self.head(self.convs(h))
        return h.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)  # [B, 1, 28, 28] logits (batch left symbolic for export)


register("decoder", "conv", ConvOptions, builtin=True)(lambda cfg, options: Decoder(cfg.latent_dim, options))
