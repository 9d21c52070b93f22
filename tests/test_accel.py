"""The speed work's contract (mnist_vae/accel): a private torch API that is missing switches its path off,
with one warning, and the stock path runs; where the API is there, the path gives the stock bits."""

from __future__ import annotations

import types
import warnings

import pytest
import torch

import mnist_vae.accel as accel
from mnist_vae.accel import convt
from mnist_vae.accel.bf16_copy import MIN_COPIED_WEIGHTS, Linear, keep_bf16_copies, update_through_copy


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "_warned", set())


def _layer() -> tuple[Linear, torch.optim.Optimizer]:
    torch.manual_seed(0)
    layer = Linear(1 << 10, MIN_COPIED_WEIGHTS >> 10)  # just large enough for a copy
    return layer, torch.optim.Adam(layer.parameters(), lr=1e-3, fused=True)


def _train(layer: Linear, opt: torch.optim.Optimizer, copied: list[Linear], steps: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, layer.in_features, generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = layer(x).float().square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for m in copied:
            update_through_copy(opt, m)
        opt.step()
    return [layer.weight.detach().clone(), layer.bias.detach().clone()]


def test_the_bf16_copy_gives_the_stock_bits() -> None:
    layer, opt = _layer()
    copied = keep_bf16_copies(layer, opt, on=True)
    assert copied == [layer]
    fast = _train(layer, opt, copied)
    layer, opt = _layer()
    assert keep_bf16_copies(layer, opt, on=False) == [] and layer.bf16_copy is None
    stock = _train(layer, opt, [])
    assert all(torch.equal(a, b) for a, b in zip(fast, stock))


def test_a_missing_fused_kernel_leaves_the_stock_path_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    layer, opt = _layer()
    with monkeypatch.context() as m:
        m.delattr(torch, "_fused_adam_")
        with pytest.warns(UserWarning, match=r"torch\._fused_adam_ is missing") as caught:
            assert keep_bf16_copies(layer, opt, on=True) == []
            assert keep_bf16_copies(layer, opt, on=True) == []  # asked again: no second warning
    assert len(caught) == 1 and layer.bf16_copy is None


def test_a_missing_version_counter_leaves_the_stock_path(monkeypatch: pytest.MonkeyPatch) -> None:
    layer, opt = _layer()
    with monkeypatch.context() as m:
        m.setattr(accel.bf16_copy, "torch", types.SimpleNamespace(Tensor=object(), is_tensor=torch.is_tensor, _fused_adam_=object()))
        with pytest.warns(UserWarning, match=r"Tensor\._version is missing"):
            assert keep_bf16_copies(layer, opt, on=True) == []


def test_a_missing_convolution_backward_runs_the_stock_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    with monkeypatch.context() as m:
        m.setattr(torch.ops, "aten", types.SimpleNamespace())  # this torch without the private op
        with pytest.warns(UserWarning, match=r"convolution_backward is missing"):
            layer = convt.conv_transpose_same(4, 3, stride=2, kernel=3)
    calls: list[int] = []
    monkeypatch.setattr(convt._SplitBackwardConvT, "apply", lambda *a: calls.append(1))
    x = torch.randn(2, 4, 7, 7).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    stock = torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    stock.load_state_dict(layer.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning as the layer runs
        assert torch.equal(layer(x), stock(x)) and calls == []
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(layer(x), stock(x)) and calls == []
