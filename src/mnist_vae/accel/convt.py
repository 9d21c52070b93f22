"""Transposed convolution with "same" padding, and faster CPU paths for its stride-1 layers.

oneDNN's transposed-convolution kernels are slow for some stride-1 shapes on CPU (the timings are
in docs/performance.md):

- a layer with few output channels (the decoder's last, 32 -> 1 on 28x28) is written as one
  matrix multiply over the channels-last input plus k·k shifted adds (the "GEMM path"),

      T[b, y, x, (ky, kx, o)] = sum_c in[b, y, x, c] · W[c, o, ky, kx]           ([N, C] @ [C, k·k·O])
      out[b, y, x, o] = bias[o] + sum_{ky, kx} T[b, y + p - ky, x + p - kx, (ky, kx, o)]

- other stride-1 layers are a plain convolution with the kernel flipped and its channel axes
  swapped (the "conv2d path").

Same weights and parameter names as ``nn.ConvTranspose2d``; the sums are merely added in another
order (results agree to ~1e-6). Both paths are taken only where they were measured: CPU,
channels-last fp32/fp64 input, no autocast, not while exporting; anything else runs the stock kernel.

Under CPU bf16 autocast every layer, whatever its stride, runs the stock forward with the split
backward (:class:`_SplitBackwardConvT`): oneDNN's combined backward of a bf16 transposed convolution
is slower than its three parts, which give the same bits (docs/performance.md has the measurements).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import private_api

#: Stride-1 layers with at most this many output channels take the GEMM path, the others the
#: conv2d path (the GEMM's k·k·O-wide output stops paying off above a few channels).
GEMM_MAX_OUT_CHANNELS = 4


def conv_transpose_same(c_in: int, c_out: int, stride: int, kernel: int) -> nn.ConvTranspose2d:
    """A transposed convolution with Keras-style "same" padding: output side = input side · stride."""
    pad = (kernel - 1) // 2
    # PyTorch: out = (in-1)·s - 2p + k + output_padding; choose output_padding to reach in·s.
    return ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=pad, output_padding=stride + 2 * pad - kernel)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that takes the GEMM or conv2d path when one applies (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        k = self.kernel_size[0]
        # The layer's own conditions, fixed at construction; forward() checks only the input's.
        self._plain = self.dilation == (1, 1) and self.groups == 1 and self.bias is not None
        # The split backward calls a private op; without it the layers it serves run the stock kernel.
        self._split = self._plain and private_api(torch.ops.aten, "convolution_backward", "torch.ops.aten.convolution_backward") is not None
        self._same_stride1 = (
            self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.kernel_size == (k, k)
            and k % 2 == 1
            and self.padding == ((k - 1) // 2, (k - 1) // 2)
            and self.output_padding == (0, 0)
            and self.bias is not None
        )

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and self._bf16_split_applies(x):
            # CPU bf16 autocast: the casts autocast would make, then the stock forward with the split
            # backward, which oneDNN computes bit for bit as its combined call (docs/performance.md has the speed).
            bf, bias = torch.bfloat16, self.bias
            assert bias is not None  # (_plain)
            return _SplitBackwardConvT.apply(x.to(bf), self.weight.to(bf), bias.to(bf), self.stride, self.padding, self.output_padding)
        if output_size is None and self._fast_path_applies(x):
            if not self._same_stride1:  # strided: oneDNN forward, backward in three separate calls
                if self._split:
                    return _SplitBackwardConvT.apply(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)
                return super().forward(x, output_size)
            if self.out_channels <= GEMM_MAX_OUT_CHANNELS:
                return _SameConvTranspose1.apply(x, self.weight, self.bias)
            # conv_transpose(x, W, padding p) = conv2d(x, W with in/out swapped and flipped, padding k-1-p)
            return F.conv2d(x, self.weight.transpose(0, 1).flip(2, 3), self.bias, padding=self.padding)
        return super().forward(x, output_size)

    def _bf16_split_applies(self, x: torch.Tensor) -> bool:
        """Under CPU bf16 autocast (any memory layout), no dilation or groups, a bias, not while exporting."""
        return (
            self._split
            and x.dim() == 4
            and x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export()
        )

    def _fast_path_applies(self, x: torch.Tensor) -> bool:
        """No dilation or groups, a bias, on channels-last fp32/fp64 CPU input, not while exporting."""
        return (
            self._plain
            and x.dim() == 4
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export()
        )


class _SplitBackwardConvT(torch.autograd.Function):
    """A strided transposed convolution whose backward is three calls instead of oneDNN's combined one.

    The input gradient is the plain convolution it is (``conv2d(grad, W, stride, padding)``), the
    weight gradient comes from ``convolution_backward`` asked for the weight alone, the bias
    gradient is a sum: faster on CPU than the combined call (docs/performance.md).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int], output_padding: tuple[int, int]) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, output_padding)
        return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, output_padding = ctx.conf
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight, None, stride, padding)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                [weight.shape[1]],
                list(stride),
                list(padding),
                [1, 1],
                True,
                list(output_padding),
                1,
                [False, True, False],
            )[1]
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


class _SameConvTranspose1(torch.autograd.Function):
    """Stride-1 "same" transposed convolution as a GEMM plus k·k shifted adds (channels-last)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        o, k = weight.shape[1], weight.shape[-1]
        p = (k - 1) // 2
        xm = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # [N, C]: a view of channels-last input
        wm = weight.permute(0, 2, 3, 1).reshape(c, k * k * o)  # [C, (ky, kx, o)]
        t = (xm @ wm).view(b, h, w, k * k, o)
        # out[y] = sum_ky T[y + p - ky, ky]: in coordinates padded by p, T[y + 2p - ky].
        tp = F.pad(t, (0, 0, 0, 0, p, p, p, p))  # [B, H+2p, W+2p, k·k, O]
        out = bias.to(x.dtype).expand(b, h, w, o).clone()
        for ky in range(k):
            for kx in range(k):
                out += tp[:, 2 * p - ky : 2 * p - ky + h, 2 * p - kx : 2 * p - kx + w, ky * k + kx]
        ctx.save_for_backward(xm, wm)
        ctx.shape = (b, c, h, w, o, k)
        return out.permute(0, 3, 1, 2)  # [B, O, H, W], channels-last strides

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xm, wm = ctx.saved_tensors
        b, c, h, w, o, k = ctx.shape
        p = (k - 1) // 2
        g = grad.permute(0, 2, 3, 1)  # [B, H, W, O]
        # dL/dT[y, (ky, kx)] = grad[y - p + ky, x - p + kx]: shifted windows of the padded gradient.
        gp = F.pad(g, (0, 0, p, p, p, p))
        dt = torch.stack([gp[:, ky : ky + h, kx : kx + w] for ky in range(k) for kx in range(k)], dim=3)
        dt = dt.reshape(b * h * w, k * k * o)  # [N, (ky, kx, o)]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (dt @ wm.t()).view(b, h, w, c).permute(0, 3, 1, 2)  # channels-last, like x
        if ctx.needs_input_grad[1]:
            # Per-image products, summed: faster on CPU than one [k·k·O, N] @ [N, C] with N = B·H·W (docs/performance.md).
            dw = torch.bmm(dt.view(b, h * w, k * k * o).transpose(1, 2), xm.view(b, h * w, c)).sum(0)  # [(ky, kx, o), C]
            grad_w = dw.t().reshape(c, k, k, o).permute(0, 3, 1, 2).contiguous()  # [C, O, k, k]
        if ctx.needs_input_grad[2]:
            grad_b = g.sum((0, 1, 2))
        return grad_x, grad_w, grad_b
