"""The model registry, a dict and a decorator: ``REGISTRY[role][kind]`` is the :class:`Plugin` that builds that kind.

Kinds register through :func:`register` (built-in ones as models/encoder.py and decoder.py are imported, installed ones by entry
points of the group ``mnist_vae.models``). Nothing is checked on import: a run's entry (:func:`plugin_records`) and the model
factory check a plugin's kind and options, and the factory its module against the contract (docs/plugins.md)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from functools import partial
from importlib import metadata
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..config import IMAGE_SIZE, ModelConfig
from ..errors import ConfigError
from ..fields import build, first_line

#: ``build(cfg, options) -> nn.Module``: the model config and an instance of the kind's options dataclass.
Builder = Callable[[ModelConfig, Any], nn.Module]
Decorator = Callable[[Builder], Builder]
PLUGIN_GROUP, log = "mnist_vae.models", logging.getLogger(__name__)
_loaded: dict[str, str | None] = {}  # entry point -> None (loaded) or why it failed to load
_loading: list[Any] = []  # the entry points being loaded: what registers meanwhile is theirs
_NoOptions = dataclasses.make_dataclass("NoOptions", [], frozen=True)


class PluginError(ConfigError):
    """A plugin kind is missing, fails to load or build, is given an unknown option, or breaks the contract."""


@dataclasses.dataclass(frozen=True)
class Plugin:
    """One registered kind: who builds it, its options dataclass (None: none), the package and module it comes from."""

    role: str  # "encoder" or "decoder"
    kind: str
    build: Builder
    options: type | None = None
    distribution: str | None = None
    version: str | None = None
    module: str = ""
    builtin: bool = False

    def describe(self) -> str:
        """``encoder 'gru' (mnist-vae-gru 0.1.0, module mnist_vae_gru)``: the plugin as error messages name it."""
        if self.builtin:
            return f"the built-in {self.role} {self.kind!r}"
        where = f"{self.distribution} {self.version}, module" if self.distribution else "registered from Python in"
        return f"{self.role} {self.kind!r} ({where} {self.module})"


REGISTRY: dict[str, dict[str, Plugin]] = {"encoder": {}, "decoder": {}}


def register(role: str, kind: str, options: type | None = None, *, replace: bool = False, builtin: bool = False) -> Decorator:
    """``@register("encoder", "gru", GRUOptions)`` on ``build(cfg, options: GRUOptions)``: ``encoder = "gru"`` builds with it.

    ``options``: a dataclass type, its fields the options (None: none). ``replace=True`` replaces a kind of that name."""

    def add(fn: Builder) -> Builder:
        where, old = f"register_{role}({kind!r})", REGISTRY[role].get(kind)
        if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", kind):
            raise PluginError(f"register_{role}: the kind must be a name of letters, digits and _ . + - (a TOML string), got {kind!r}")
        if options is not None and not (isinstance(options, type) and dataclasses.is_dataclass(options)):
            raise PluginError(f"{where}: options must be a dataclass type (its fields are the options) or None, got {options!r}")
        if old is not None and (old.builtin or (old.build is not fn and not replace)):
            why = "cannot be replaced; choose another name" if old.builtin else "is already registered; pass replace=True to replace it"
            raise PluginError(f"{where}: {old.describe()} {why}")
        dist = getattr(_loading[-1], "dist", None) if _loading else None
        name, version = (dist.name, dist.version) if dist is not None else (None, None)
        REGISTRY[role][kind] = Plugin(role, kind, fn, options, name, version, getattr(fn, "__module__", None) or "", builtin)
        return fn

    return add


def register_encoder(kind: str, build: Builder, options: type | None = None, *, replace: bool = False) -> None:
    """Make ``encoder = kind`` in a config build its encoder with ``build(cfg, options)`` (see :func:`register`)."""
    register("encoder", kind, options, replace=replace)(build)


def register_decoder(kind: str, build: Builder, options: type | None = None, *, replace: bool = False) -> None:
    """Make ``decoder = kind`` in a config build its decoder with ``build(cfg, options)`` (see :func:`register`)."""
    register("decoder", kind, options, replace=replace)(build)


def _load(ep: Any, quiet: bool = False) -> None:
    """Load an entry point once: import its target, call it; a failure raises whenever asked again (one warning if ``quiet``)."""
    key = f"{ep.name}={ep.value}"
    if key not in _loaded:
        _loading.append(ep)
        try:
            target = ep.load()
            if not isinstance(target, ModuleType):  # a module registers as it is imported
                target()
            _loaded[key] = None
        except Exception as exc:
            where = f"{ep.dist.name} {ep.dist.version}, " if ep.dist is not None else ""
            why = f"{type(exc).__name__}: {first_line(exc)}"
            _loaded[key] = f"plugin {ep.name!r} ({where}entry point {ep.name} = {ep.value}) failed to load: {why}"
            if quiet:
                log.warning(_loaded[key])
        finally:
            _loading.pop()
    if _loaded[key] and not quiet:
        raise PluginError(_loaded[key])


def find(role: str, kind: str) -> Plugin | None:
    """The ``role`` kind; installed plugins are loaded if it is not registered (the failure of the one named ``kind`` is the answer)."""
    eps = metadata.entry_points(group=PLUGIN_GROUP) if kind not in REGISTRY[role] else ()
    for ep in sorted(eps, key=lambda ep: ep.name != kind):
        if kind not in REGISTRY[role]:  # the others too, until one of them has registered it
            _load(ep, quiet=ep.name != kind)
    return REGISTRY[role].get(kind)


def get_plugin(role: str, kind: str) -> Plugin:
    """The registered ``role`` kind; a one-line :class:`ConfigError` listing the valid kinds if there is none."""
    plugin = find(role, kind)
    if plugin is None:
        raise ConfigError(f"{role}: {kind!r} is not one of {', '.join(kinds(role))}")
    return plugin


def kinds(role: str) -> list[str]:
    """Every ``role`` kind: the built-in ones first, then the others by name (installed plugins loaded)."""
    find(role, "")  # no kind is named "": every installed plugin is loaded
    return [p.kind for p in sorted(REGISTRY[role].values(), key=lambda p: (not p.builtin, "" if p.builtin else p.kind))]


encoder_kinds, decoder_kinds = partial(kinds, "encoder"), partial(kinds, "decoder")


def plugin_records(cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """Check ``cfg``'s kinds and options (nothing is built); the plugins (not built-in kinds) by role, as a run records them."""
    found = [_resolve(role, cfg)[0] for role in REGISTRY]
    return {p.role: {k: getattr(p, k) for k in ("kind", "distribution", "version", "module")} for p in found if not p.builtin}


def _resolve(role: str, cfg: ModelConfig) -> tuple[Plugin, Any]:
    """The plugin of ``cfg``'s ``role`` kind and the options its build gets; a bad kind or option is a one-line error."""
    plugin, given = get_plugin(role, getattr(cfg, role)), getattr(cfg, f"{role}_options")  # a built-in kind's: checked in the config
    where = f"{role}_options of {plugin.describe()}"
    return plugin, given if plugin.builtin else build(plugin.options or _NoOptions, given.to_plain(), where)


def _build(role: str, cfg: ModelConfig) -> nn.Module:
    """The model factory's part: the encoder or decoder ``cfg`` names, built with its options; a plugin's checked against the contract."""
    plugin, options = _resolve(role, cfg)
    try:
        module = plugin.build(cfg, options)
    except Exception as exc:
        if plugin.builtin:
            raise
        raise PluginError(f"{plugin.describe()} failed to build: {type(exc).__name__}: {first_line(exc)}") from None
    if not plugin.builtin:
        check_contract(plugin, module, cfg)
    return module


build_encoder, build_decoder = partial(_build, "encoder"), partial(_build, "decoder")


def check_contract(plugin: Plugin, module: Any, cfg: ModelConfig) -> None:
    """Run ``module`` once on a batch of two (eval mode, no gradients, the random state kept) and check what it returns."""
    if not isinstance(module, nn.Module):
        raise PluginError(f"{plugin.describe()}: build returned {show(module)}; expected a torch.nn.Module")
    b, d, s, encoder = 2, cfg.latent_dim, IMAGE_SIZE, plugin.role == "encoder"
    given, example = (f"x [{b}, {s}, {s}]", torch.full((b, s, s), 0.5)) if encoder else (f"z [{b}, {d}]", torch.zeros(b, d))
    expected = f"(mu, logvar), each a float tensor [{b}, {d}]" if encoder else f"logits, a float tensor [{b}, 1, {s}, {s}]"
    modes = {m: m.training for m in module.modules()}
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = module.eval()(example.to(next(iter(module.parameters()), example).device))
    except Exception as exc:
        raise PluginError(f"{plugin.describe()} failed on {given}: {type(exc).__name__}: {first_line(exc)}; expected {expected}") from None
    finally:
        for m, training in modes.items():
            m.training = training  # the module's own modes, restored
    outs, shapes = (out if isinstance(out, (tuple, list)) else [out], [(b, d)] * 2) if encoder else ([out], [(b, 1, s, s)])
    fit = [isinstance(t, torch.Tensor) and t.is_floating_point() and tuple(t.shape) == shape for t, shape in zip(outs, shapes)]
    if len(outs) != len(shapes) or not all(fit):
        raise PluginError(f"{plugin.describe()} returned {show(out)} for {given}; expected {expected} (docs/plugins.md)")


def show(value: Any) -> str:
    """A value in words: ``a tensor [2, 16] (float32)``, ``a tuple of 2 (...)``, ``a str``."""
    if isinstance(value, torch.Tensor):
        return f"a tensor [{', '.join(map(str, value.shape))}] ({str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} (" + ", ".join(show(v) for v in value[:4]) + ")"
    return f"a {type(value).__name__}"
