"""The bf16 training fast paths compute the same bits as the stock autocast path.

accel/bf16_copy.py (a bf16 weight copy updated through the optimizer's fused kernel) and
accel/convt.py (the split backward of transposed convolutions under bf16 autocast) are speed
changes only: weights and optimizer state after several steps must equal the stock path's exactly.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mnist_vae.accel import convt
from mnist_vae.accel.bf16_copy import Linear
from mnist_vae.models import VAE
from mnist_vae.presets import get_config
from mnist_vae.training import step as stepmod


def _train(name: str, monkeypatch: pytest.MonkeyPatch, fast: bool, steps: int = 4, **train: object) -> tuple[dict, dict, list[float]]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(stepmod, "keep_bf16_copies", lambda *a, **k: [])
            m.setattr(convt.ConvTranspose2d, "_bf16_split_applies", lambda self, x: False)
        torch.manual_seed(0)
        cfg = get_config(name)
        model = VAE(cfg.model).train()
        model.channels_last = True
        t = replace(cfg.train, precision="bf16", **train)
        take = stepmod.TrainStep(model, model, t, torch.device("cpu"), total_steps=steps)
        assert len(take.copied) == (1 if fast and name == "original" else 0)
        g = torch.Generator().manual_seed(1)
        losses = []
        for _ in range(steps):
            x = (torch.rand(32, 28, 28, generator=g) > 0.5).float()
            losses.append(take(x, torch.randn(32, cfg.model.latent_dim, generator=g), 1.0)[0].item())
        return model.state_dict(), take.optimizer.state_dict()["state"], losses


def _assert_same(a: tuple[dict, dict, list[float]], b: tuple[dict, dict, list[float]]) -> None:
    (wa, sa, la), (wb, sb, lb) = a, b
    assert la == lb
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert sorted(sa) == sorted(sb)
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])


@pytest.mark.parametrize("name,train", [("original", {}), ("original", {"weight_decay": 0.01, "lr_schedule": "cosine"}), ("dropout", {})])
def test_fast_bf16_step_gives_the_stock_bits(name: str, train: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _train(name, monkeypatch, True, **train)
    stock = _train(name, monkeypatch, False, **train)
    assert fast[2][0] != fast[2][-1]  # it trained
    _assert_same(fast, stock)


def test_copy_is_made_afresh_after_the_weight_changes_elsewhere() -> None:
    torch.manual_seed(0)
    layer = Linear(1 << 10, 1 << 10)
    layer.keep_bf16_copy()
    x = torch.randn(4, 1 << 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y1 = layer(x)
        with torch.no_grad():
            layer.weight.mul_(2)  # e.g. a checkpoint loaded into the weight
        y2 = layer(x)
        stock = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert layer.bf16_copy is not None and torch.equal(layer.bf16_copy, layer.weight.to(torch.bfloat16))
    assert torch.equal(y2, stock) and not torch.equal(y1, y2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(x), stock)  # no gradients wanted: the plain path


def test_no_copy_where_the_step_cannot_update_through_it() -> None:
    cfg = get_config("original")
    model = VAE(cfg.model)
    for t in (cfg.train, replace(cfg.train, precision="bf16", lr_schedule="none")):
        take = stepmod.TrainStep(model, model, t, torch.device("cpu"), total_steps=1)
        assert bool(take.copied) == (t.precision == "bf16")
    wrapper = torch.nn.Sequential(model)  # stands for a DDP wrapper: the forward is not the model's own
    take = stepmod.TrainStep(wrapper, model, replace(cfg.train, precision="bf16"), torch.device("cpu"), total_steps=1)
    assert take.copied == [] and model.decoder.head[1].bf16_copy is None


def test_resume_through_a_checkpoint_is_exact() -> None:
    """Two steps, the model's and optimizer's state and the random state into fresh objects, two more: the same bits as four in a row."""
    cfg = get_config("original")
    t = replace(cfg.train, precision="bf16")
    g = torch.Generator().manual_seed(1)
    batches = [((torch.rand(16, 28, 28, generator=g) > 0.5).float(), torch.randn(16, cfg.model.latent_dim, generator=g)) for _ in range(4)]

    def fresh() -> tuple[VAE, stepmod.TrainStep]:
        torch.manual_seed(0)
        model = VAE(cfg.model).train()
        return model, stepmod.TrainStep(model, model, t, torch.device("cpu"), total_steps=4)

    model, take = fresh()
    for x, eps in batches:
        take(x, eps, 1.0)
    straight = model.state_dict()

    model, take = fresh()
    for x, eps in batches[:2]:
        take(x, eps, 1.0)
    # The step's state holds the random generators too (dropout draws); a checkpoint as resume reads it.
    ckpt = SimpleNamespace(weights={k: v.clone() for k, v in model.state_dict().items()}, trainer=take.state_dict(), path=Path("ckpt"))
    model, take = fresh()
    take(*batches[0], 1.0)  # a copy made from other weights, to be found stale after the restore
    take.restore(copy.deepcopy(ckpt), model)  # type: ignore[arg-type]  # (a loaded optimizer shares the tensors it is given)
    assert take.copied
    for x, eps in batches[2:]:
        take(x, eps, 1.0)
    resumed = model.state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    torch.manual_seed(0)
    model = VAE(cfg.model).train()
    take = stepmod.TrainStep(model, model, t, torch.device("cpu"), total_steps=4, resume=ckpt)  # type: ignore[arg-type]
    assert take.copied  # the copies are made of the restored weights
    for x, eps in batches[2:]:
        take(x, eps, 1.0)
    assert all(torch.equal(straight[k], v) for k, v in model.state_dict().items())
