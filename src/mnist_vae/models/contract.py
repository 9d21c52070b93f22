"""The contract between the program and an encoder or decoder kind: what a plugin is, and the check of its output.

An encoder maps x [B, 28, 28] in [0, 1] to (μ, log σ²), each [B, latent_dim]; a decoder maps
z [B, latent_dim] to logits [B, 1, 28, 28]. :func:`check_contract` runs a freshly built module once
on a dummy batch and raises a :class:`PluginError` (one line in the CLI) naming the plugin, what it
returned and what was expected. The registry (:mod:`.registry`) builds, finds and records plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import IMAGE_SIZE, ModelConfig
from ..errors import ConfigError

#: Images (encoder) or codes (decoder) in the dummy batch the contract is checked on.
CHECK_BATCH = 2

#: ``build(cfg, options) -> nn.Module``: the model config (``cfg.latent_dim`` and friends) and the
#: plugin's options (an instance of its options dataclass, or a dict of its defaults updated by the config's).
Builder = Callable[[ModelConfig, Any], nn.Module]
#: What a plugin declares as its options: a dataclass type, a dict of defaults, or None (no options).
OptionSpec = type | Mapping[str, Any] | None


class PluginError(ConfigError):
    """A plugin kind is missing, fails to load or build, is given an unknown option, or breaks the contract."""


@dataclass(frozen=True)
class Plugin:
    """One registered kind: who builds it, its options, and where it comes from."""

    role: str  # "encoder" or "decoder"
    kind: str
    build: Builder
    options: OptionSpec = None
    distribution: str | None = None  # the installed package (distribution) that provides it
    version: str | None = None
    module: str = ""  # the module that defines ``build``
    builtin: bool = False

    def source(self) -> str:
        """Where it comes from, in words: ``mnist-vae-gru 0.1.0`` or ``registered from Python in my_module``."""
        if self.builtin:
            return "built in"
        if self.distribution:
            return f"{named(self.distribution, self.version)}, module {self.module}"
        return f"registered from Python in {self.module}"

    def describe(self) -> str:
        """``encoder 'gru' (mnist-vae-gru 0.1.0, module mnist_vae_gru)``: the plugin as error messages name it."""
        return f"{self.role} {self.kind!r} ({self.source()})"

    def record(self) -> dict[str, Any]:
        """What a run folder records about it (``meta.json`` -> ``plugins`` -> role)."""
        return {"kind": self.kind, "distribution": self.distribution, "version": self.version, "module": self.module}


def named(distribution: str, version: str | None) -> str:
    return f"{distribution} {version}" if version else distribution


def check_contract(plugin: Plugin, module: nn.Module, cfg: ModelConfig) -> None:
    """Run ``module`` once on a dummy batch and raise :class:`PluginError` unless its output keeps the contract.

    Eval mode, no gradients, and the random number generator's state restored afterwards: the check
    changes neither the weights nor the draws that come after it.
    """
    b, d = CHECK_BATCH, cfg.latent_dim
    if plugin.role == "encoder":
        given, example = f"x [{b}, {IMAGE_SIZE}, {IMAGE_SIZE}]", torch.full((b, IMAGE_SIZE, IMAGE_SIZE), 0.5)
        expected = f"(mu, logvar), each a float tensor [{b}, {d}]"
    else:
        given, example = f"z [{b}, {d}]", torch.zeros(b, d)
        expected = f"logits, a float tensor [{b}, 1, {IMAGE_SIZE}, {IMAGE_SIZE}]"
    modes = {m: m.training for m in module.modules()}
    try:
        device = next(iter(module.parameters())).device
    except StopIteration:
        device = torch.device("cpu")
    module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = module(example.to(device))
    except Exception as exc:
        raise PluginError(f"{plugin.describe()} failed on {given}: {type(exc).__name__}: {first_line(exc)}; expected {expected}") from None
    finally:
        for m, training in modes.items():
            m.training = training
    if plugin.role == "encoder":
        ok = isinstance(out, (tuple, list)) and len(out) == 2 and all(is_tensor_of(t, (b, d)) for t in out)
    else:
        ok = is_tensor_of(out, (b, 1, IMAGE_SIZE, IMAGE_SIZE))
    if not ok:
        raise PluginError(f"{plugin.describe()} returned {show(out)} for {given}; expected {expected} (docs/plugins.md)")


def is_tensor_of(t: Any, shape: tuple[int, ...]) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and tuple(t.shape) == shape


def show(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor [{', '.join(map(str, value.shape))}] ({str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} (" + ", ".join(show(v) for v in value[:4]) + ")"
    return f"a {type(value).__name__}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
