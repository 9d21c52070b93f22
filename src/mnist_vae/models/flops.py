"""Floating-point operations per image, counted from the layer shapes (multiply-add = 2 FLOPs).

Counts the matrix work of Linear, LSTM and ConvTranspose2d layers, which is where the time goes;
element-wise work (activations, the loss, the optimizer) is left out and reported as such.
A training step is taken as forward + backward ≈ 3 × forward (the backward pass computes two
products per forward product: gradients for the inputs and for the weights).
tests/test_flops.py checks these counts against torch's ``FlopCounterMode``.
"""

from __future__ import annotations

import torch
from torch import nn

from .vae import VAE


def _lstm_macs(m: nn.LSTM, steps: int) -> int:
    directions = 2 if m.bidirectional else 1
    macs, inp = 0, m.input_size
    for _ in range(m.num_layers):
        # Per direction: four gates, input and recurrent products.
        macs += directions * steps * 4 * m.hidden_size * (inp + m.hidden_size)
        inp = directions * m.hidden_size  # the next layer reads both directions' outputs
    return macs


def forward_flops(model: VAE) -> dict[str, int]:
    """{"encoder", "decoder", "total"} forward FLOPs for one image, from a traced batch of one."""
    counts = {"encoder": 0, "decoder": 0}
    hooks = []

    def hook_for(part: str):
        def hook(mod: nn.Module, inputs: tuple, output) -> None:
            x = inputs[0]
            if isinstance(mod, nn.Linear):
                # Once per input row of the one image: the attention readout scores all 28 rows.
                rows = x.numel() // mod.in_features
                macs = rows * mod.in_features * mod.out_features
            elif isinstance(mod, nn.LSTM):
                macs = _lstm_macs(mod, x.shape[1])  # batch_first: [B, steps, features]
            elif isinstance(mod, nn.ConvTranspose2d):
                # Each input pixel is scattered through a k×k kernel to every output channel.
                h, w = x.shape[-2:]
                kh, kw = mod.kernel_size
                macs = h * w * mod.in_channels * (mod.out_channels // mod.groups) * kh * kw
            else:
                return
            counts[part] += 2 * macs

        return hook

    for part, sub in (("encoder", model.encoder), ("decoder", model.decoder)):
        for mod in sub.modules():
            if isinstance(mod, (nn.Linear, nn.LSTM, nn.ConvTranspose2d)):
                hooks.append(mod.register_forward_hook(hook_for(part)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 28, 28, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    counts["total"] = counts["encoder"] + counts["decoder"]
    return counts


def train_flops(model: VAE) -> int:
    """FLOPs of one training step per image: forward + backward ≈ 3 × forward."""
    return 3 * forward_flops(model)["total"]
