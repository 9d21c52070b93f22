"""The fast paths of the stride-1 transposed convolution compute what nn.ConvTranspose2d computes."""

import pytest
import torch

from mnist_vae.accel.convt import ConvTranspose2d, conv_transpose_same
from mnist_vae.models import VAE
from mnist_vae.presets import get_config, list_configs


def _both_paths(layer: ConvTranspose2d, x: torch.Tensor):
    """(output, grad x, grad weight, grad bias) from the layer and from the stock kernel."""
    results = []
    for forward in (layer.forward, lambda t: torch.nn.ConvTranspose2d.forward(layer, t)):
        xx = x.detach().clone().requires_grad_()
        y = forward(xx)
        g = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)  # a non-uniform upstream gradient
        grads = torch.autograd.grad((y * g).sum(), [xx, layer.weight, layer.bias])
        results.append((y, *grads))
    return results


# Stride 1: the first three take the GEMM path (<= 4 output channels), the next two the conv2d path;
# stride 2 and 3: oneDNN's forward with the split backward.
@pytest.mark.parametrize(
    "c_in, c_out, stride, kernel, batch, side",
    [(32, 1, 1, 3, 5, 28), (7, 2, 1, 5, 1, 9), (3, 4, 1, 1, 2, 6), (1, 64, 1, 3, 3, 14), (6, 5, 1, 5, 2, 7),
     (64, 32, 2, 3, 3, 7), (32, 1, 2, 3, 2, 14), (5, 3, 2, 5, 3, 4), (4, 6, 3, 3, 2, 5)],
)  # fmt: skip
def test_fast_paths_match_the_stock_kernel_in_value_and_gradients(c_in, c_out, stride, kernel, batch, side):
    torch.manual_seed(0)
    layer = conv_transpose_same(c_in, c_out, stride, kernel).double()
    x = torch.randn(batch, c_in, side, side, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    assert layer._fast_path_applies(x)
    (y, *grads), (y_ref, *grads_ref) = _both_paths(layer, x)
    assert y.shape == y_ref.shape == (batch, c_out, side * stride, side * stride)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for got, want in zip(grads, grads_ref):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_gemm_path_passes_gradcheck():
    torch.manual_seed(0)
    layer = conv_transpose_same(3, 1, 1, 3).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    from mnist_vae.accel.convt import _SameConvTranspose1

    assert torch.autograd.gradcheck(_SameConvTranspose1.apply, (x, w, b))


def test_split_backward_passes_gradcheck():
    torch.manual_seed(0)
    layer = conv_transpose_same(3, 2, 2, 3).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    from mnist_vae.accel.convt import _SplitBackwardConvT

    args = (x, w, b, layer.stride, layer.padding, layer.output_padding)
    assert torch.autograd.gradcheck(_SplitBackwardConvT.apply, args)


def test_stock_kernel_where_the_fast_paths_do_not_apply():
    x = torch.randn(2, 32, 14, 14)
    assert not conv_transpose_same(32, 1, 1, 3)._fast_path_applies(x)  # contiguous, not channels-last
    cl = x.contiguous(memory_format=torch.channels_last)
    assert not ConvTranspose2d(32, 4, 3, stride=2, dilation=2)._fast_path_applies(cl)  # dilated
    assert not ConvTranspose2d(32, 4, 3, stride=2, bias=False)._fast_path_applies(cl)  # no bias
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not conv_transpose_same(32, 1, 1, 3)._fast_path_applies(cl)


@pytest.mark.parametrize("name", list_configs())
def test_channels_last_decoder_gives_the_same_training_step(name):
    """The layout switch (and the GEMM path it enables) changes no number beyond rounding."""
    torch.manual_seed(0)
    cfg = get_config(name).model
    a = VAE(cfg).eval()  # eval: dropout off, so both runs see the same function
    b = VAE(cfg).eval()
    b.load_state_dict(a.state_dict())
    b.decoder.channels_last = True
    z = torch.randn(6, cfg.latent_dim)
    out_a, out_b = a.decode(z), b.decode(z)
    torch.testing.assert_close(out_a, out_b, rtol=1e-4, atol=1e-4)
    out_a.pow(2).sum().backward()
    out_b.pow(2).sum().backward()
    for (pname, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pa.grad is not None:
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-3, atol=1e-3, msg=pname)


def test_channels_last_decoder_takes_the_gemm_path_for_its_output_layer(monkeypatch):
    from mnist_vae.accel import convt

    calls = []
    real = convt._SameConvTranspose1.apply
    monkeypatch.setattr(convt._SameConvTranspose1, "apply", lambda *a: calls.append(1) or real(*a))
    model = VAE(get_config("optimized").model)
    z = torch.randn(2, model.cfg.latent_dim)
    model.decode(z)
    assert calls == []  # contiguous layout: stock kernels
    model.decoder.channels_last = True
    model.decode(z)
    assert calls == [1]
