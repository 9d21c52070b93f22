"""Decoder p(x|z): dense layers, a reshape, transposed convolutions, 28x28 Bernoulli logits."""

from __future__ import annotations

import torch
from torch import nn

from ..config import IMAGE_SIZE, ModelConfig


def conv_transpose_same(c_in: int, c_out: int, stride: int, kernel: int) -> nn.ConvTranspose2d:
    """A transposed convolution with Keras-style "same" padding: output side = input side · stride."""
    pad = (kernel - 1) // 2
    # PyTorch: out = (in-1)·s - 2p + k + output_padding; choose output_padding to reach in·s.
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=pad, output_padding=stride + 2 * pad - kernel)


class Decoder(nn.Module):
    """z [B, latent_dim] -> logits [B, 1, 28, 28]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p_hidden = cfg.dropout if cfg.dropout_where == "every-hidden" else 0.0
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for units in cfg.decoder_dense:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if p_hidden:
                layers.append(nn.Dropout(p_hidden))
            width = units
        layers.append(nn.Unflatten(1, cfg.decoder_reshape))  # [B, C·H·W] -> [B, C, H, W]
        channels = cfg.decoder_reshape[0]
        n = len(cfg.decoder_convs)
        for i, (out_ch, stride) in enumerate(cfg.decoder_convs):
            layers.append(conv_transpose_same(channels, out_ch, stride, cfg.kernel_size))
            is_output = cfg.head == "conv" and i == n - 1
            if not is_output:
                layers.append(nn.ReLU())
                between_convs = cfg.dropout_where == "between-convs" and i < n - 1
                if cfg.dropout and (p_hidden or between_convs):
                    layers.append(nn.Dropout(cfg.dropout))
            channels = out_ch
        if cfg.head == "dense":
            c, h, w = cfg.decoder_output_shape()
            layers += [nn.Flatten(), nn.Linear(c * h * w, IMAGE_SIZE * IMAGE_SIZE)]
            layers.append(nn.Unflatten(1, (1, IMAGE_SIZE, IMAGE_SIZE)))  # [B, 784] -> [B, 1, 28, 28]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
