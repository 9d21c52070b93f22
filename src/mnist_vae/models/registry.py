"""The model registry: which code builds each kind of encoder and decoder, and the contract it must keep.

``ModelConfig.encoder`` and ``ModelConfig.decoder`` name a *kind*. The package's own kinds (the
``lstm`` and ``mlp`` encoders, the ``conv`` decoder) register here as they are imported; a user adds
one from Python (:func:`register_encoder`, :func:`register_decoder`) or installs a package that
declares an entry point in the group ``mnist_vae.models`` (loaded the first time an unknown kind is
asked for, or when the kinds are listed). docs/plugins.md is the plugin author's page.

The contract, checked once per build on a dummy batch of two: an encoder maps x [B, 28, 28] in
[0, 1] to (μ, log σ²), each [B, latent_dim]; a decoder maps z [B, latent_dim] to logits
[B, 1, 28, 28]. A plugin that breaks it, fails to load or is given an option it does not declare
raises a :class:`PluginError` (a :class:`~mnist_vae.errors.ConfigError`: one line in the CLI)
naming the plugin. A run records the plugins that built it (:func:`plugin_records`, in
``meta.json`` and in each checkpoint); :func:`require_plugins` says which to install when one is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from importlib import metadata
from types import ModuleType
from typing import Any

from torch import nn

from .. import config as _config
from .. import fields
from ..config import PLUGIN_GROUP, ModelConfig, Options
from ..errors import ConfigError
from .contract import Builder, OptionSpec, Plugin, PluginError, check_contract, first_line, named, show

log = logging.getLogger(__name__)

ROLES = ("encoder", "decoder")
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class _State:
    """The registered kinds, the entry points loaded so far, and the one being loaded."""

    def __init__(self) -> None:
        self.plugins: dict[tuple[str, str], Plugin] = {}
        self.loaded: dict[str, str | None] = {}  # entry point key -> None (loaded) or why it failed
        self.loading: metadata.EntryPoint | None = None


_state = _State()


# --- registering ----------------------------------------------------------------------------------


def register_encoder(kind: str, build: Builder, options: OptionSpec = None, *, replace: bool = False) -> None:
    """Make ``encoder = kind`` in a config build its encoder with ``build(cfg, options)``.

    ``options``: a dataclass type (its fields are the options, with their types and defaults) or a
    dict of defaults; None: the kind takes no options. ``replace=True`` replaces a kind registered
    before (built-in kinds cannot be replaced). docs/plugins.md states the contract.
    """
    _register("encoder", kind, build, options, replace)


def register_decoder(kind: str, build: Builder, options: OptionSpec = None, *, replace: bool = False) -> None:
    """Make ``decoder = kind`` in a config build its decoder with ``build(cfg, options)`` (see :func:`register_encoder`)."""
    _register("decoder", kind, build, options, replace)


def unregister_encoder(kind: str) -> None:
    """Forget a registered encoder kind (an installed plugin's too, for the rest of this process)."""
    _unregister("encoder", kind)


def unregister_decoder(kind: str) -> None:
    """Forget a registered decoder kind (an installed plugin's too, for the rest of this process)."""
    _unregister("decoder", kind)


def register_builtin(role: str, kind: str, build: Builder) -> None:
    """Register one of the package's own kinds (models/encoder.py and models/decoder.py call this)."""
    _state.plugins[(role, kind)] = Plugin(role, kind, build, None, None, None, getattr(build, "__module__", ""), builtin=True)


def _register(role: str, kind: str, build: Builder, options: OptionSpec, replace: bool) -> None:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise PluginError(f"register_{role}: the kind must be a name of letters, digits and _ . + - (a TOML string), got {kind!r}")
    if not callable(build):
        raise PluginError(f"register_{role}({kind!r}): build must be callable as build(cfg, options), got {type(build).__name__}")
    if options is not None and not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        if not isinstance(options, Mapping):
            raise PluginError(f"register_{role}({kind!r}): options must be a dataclass type or a dict of defaults, got {options!r}")
        Options(options, f"register_{role}({kind!r}) options")  # the defaults must be TOML values
    module = getattr(build, "__module__", None) or ""
    distribution, version = _origin(module)
    plugin = Plugin(role, kind, build, options, distribution, version, module)
    old = _state.plugins.get((role, kind))
    if old is not None:
        if old.builtin:
            raise PluginError(f"register_{role}({kind!r}): {kind!r} is a built-in {role} and cannot be replaced; choose another name")
        if old.build is not build and not replace:
            raise PluginError(f"register_{role}({kind!r}): already registered ({old.source()}); pass replace=True to replace it")
    _state.plugins[(role, kind)] = plugin


def _unregister(role: str, kind: str) -> None:
    old = _state.plugins.get((role, kind))
    if old is not None and old.builtin:
        raise PluginError(f"unregister_{role}({kind!r}): {kind!r} is a built-in {role}")
    _state.plugins.pop((role, kind), None)


def _origin(module: str) -> tuple[str | None, str | None]:
    """The distribution and version that provide ``module``: the entry point being loaded, else the installed package of that module."""
    ep = _state.loading
    if ep is not None:
        dist = getattr(ep, "dist", None)
        return (dist.name, dist.version) if dist is not None else (None, None)
    top = module.partition(".")[0]
    if not top or top == "__main__":
        return None, None
    try:
        names = metadata.packages_distributions().get(top) or []
        return (names[0], metadata.version(names[0])) if names else (None, None)
    except Exception:  # metadata of some unrelated package may be broken: the origin is only informative
        return None, None


# --- finding ----------------------------------------------------------------------------------------


def _entry_points() -> list[metadata.EntryPoint]:
    try:
        return list(metadata.entry_points(group=PLUGIN_GROUP))
    except Exception as exc:  # pragma: no cover - broken metadata of some other package
        log.warning(f"cannot read the installed {PLUGIN_GROUP} plugins: {exc}")
        return []


def _ep_key(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name if dist is not None else '?'}:{ep.name}={ep.value}"


def _ep_source(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f"{named(dist.name, dist.version)}, " if dist is not None else ""
    return f"{where}entry point {ep.name} = {ep.value}"


def _load(ep: metadata.EntryPoint) -> None:
    """Load an entry point once: import its target and call it (a module registers as it is imported)."""
    key = _ep_key(ep)
    if key in _state.loaded:
        failed = _state.loaded[key]
        if failed:
            raise PluginError(failed)
        return
    previous, _state.loading = _state.loading, ep
    try:
        target = ep.load()
        if not isinstance(target, ModuleType):
            if not callable(target):
                raise TypeError(f"{ep.value} is a {type(target).__name__}, not a function that registers the plugin")
            target()
    except Exception as exc:
        why = f"plugin {ep.name!r} ({_ep_source(ep)}) failed to load: {type(exc).__name__}: {first_line(exc)}"
        _state.loaded[key] = why
        raise PluginError(why) from None
    finally:
        _state.loading = previous
    _state.loaded[key] = None


def _load_all() -> None:
    """Load every installed plugin; one that fails is reported (once) and left out."""
    for ep in _entry_points():
        key = _ep_key(ep)
        if key in _state.loaded:
            continue
        try:
            _load(ep)
        except PluginError as exc:
            log.warning(str(exc))


def _find(role: str, kind: str) -> Plugin | None:
    """The plugin for ``kind``, loading installed plugins as needed (the one named ``kind`` first); None if none has it."""
    plugin = _state.plugins.get((role, kind))
    if plugin is not None:
        return plugin
    eps = _entry_points()
    for ep in eps:
        if ep.name == kind:
            _load(ep)  # the plugin asked for: its failure is the answer
    plugin = _state.plugins.get((role, kind))
    if plugin is None and any(_ep_key(ep) not in _state.loaded for ep in eps):
        _load_all()  # an entry point may register kinds under other names
        plugin = _state.plugins.get((role, kind))
    return plugin


def kinds(role: str) -> list[str]:
    """Every ``role`` kind available: the built-in ones first, then the others by name (installed plugins loaded)."""
    _load_all()
    found = [p for (r, _), p in _state.plugins.items() if r == role]
    return [p.kind for p in found if p.builtin] + sorted(p.kind for p in found if not p.builtin)


def encoder_kinds() -> list[str]:
    """The encoder kinds a config may name."""
    return kinds("encoder")


def decoder_kinds() -> list[str]:
    """The decoder kinds a config may name."""
    return kinds("decoder")


def get_plugin(role: str, kind: str) -> Plugin:
    """The registered ``role`` kind; :class:`ConfigError` listing the valid kinds if there is none."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    plugin = _find(role, kind)
    if plugin is None:
        raise ConfigError(f"{role}: {kind!r} is not one of {', '.join(kinds(role))}")
    return plugin


# --- options ------------------------------------------------------------------------------------------


def make_options(plugin: Plugin, given: Mapping[str, Any]) -> Any:
    """The options ``build`` receives: the config's ``{role}_options`` checked against what the plugin declares.

    An option the plugin does not declare, or of the wrong type, raises a one-line :class:`ConfigError` naming it.
    """
    field = f"{plugin.role}_options"
    given = Options(given, field).to_plain()
    spec = plugin.options
    if spec is None:
        if given:
            what = f"the built-in {plugin.role} {plugin.kind!r}" if plugin.builtin else plugin.describe()
            raise ConfigError(f"{field}: unknown option(s) {', '.join(given)}; {what} takes none")
        return {}
    if isinstance(spec, type):
        source = f"{field} of {plugin.describe()}"
        try:
            return fields.build(spec, given, source)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:  # the options dataclass's own checks
            raise ConfigError(f"{source}: {first_line(exc)}") from None
    unknown = [k for k in given if k not in spec]
    if unknown:
        raise ConfigError(
            f"{field}: unknown option(s) {', '.join(unknown)} for {plugin.describe()}; valid options: {', '.join(spec) or 'none'}"
        )
    out = dict(spec)
    for name, value in given.items():
        default = spec[name]
        if not _same_type(value, default):
            raise ConfigError(
                f"{field}.{name}: {value!r} is not a {type(default).__name__} (the default of {plugin.describe()} is {default!r})"
            )
        out[name] = float(value) if isinstance(default, float) else value
    return out


def _same_type(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace ``default`` in a dict of default options (an int is a float too, a bool is no number)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    for kind in (str, (list, tuple), Mapping):
        if isinstance(default, kind):
            return isinstance(value, kind)
    return True


def _check(role: str, kind: str, options: Options) -> None:
    """The config's check of ``encoder`` / ``decoder`` and its options (installed into config.py below)."""
    make_options(get_plugin(role, kind), options)


_config.install_kind_check(_check)


# --- building and the contract -------------------------------------------------------------------------


def build_encoder(cfg: ModelConfig) -> nn.Module:
    """The encoder ``cfg.encoder`` names, built with its options; a plugin's is checked against the contract."""
    return _build("encoder", cfg.encoder, cfg.encoder_options, cfg)


def build_decoder(cfg: ModelConfig) -> nn.Module:
    """The decoder ``cfg.decoder`` names, built with its options; a plugin's is checked against the contract."""
    return _build("decoder", cfg.decoder, cfg.decoder_options, cfg)


def _build(role: str, kind: str, given: Options, cfg: ModelConfig) -> nn.Module:
    plugin = get_plugin(role, kind)
    options = make_options(plugin, given)
    if plugin.builtin:
        return plugin.build(cfg, options)
    try:
        module = plugin.build(cfg, options)
    except Exception as exc:
        raise PluginError(f"{plugin.describe()} failed to build: {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(module, nn.Module):
        raise PluginError(f"{plugin.describe()}: build returned {show(module)}; expected a torch.nn.Module")
    check_contract(plugin, module, cfg)
    return module


# --- what a run records -------------------------------------------------------------------------------


def plugin_records(cfg: ModelConfig) -> dict[str, dict[str, Any]]:
    """The plugins (not built-in kinds) that build ``cfg``'s model, by role: what ``meta.json`` records."""
    out = {}
    for role in ROLES:
        plugin = get_plugin(role, getattr(cfg, role))
        if not plugin.builtin:
            out[role] = plugin.record()
    return out


def require_plugins(records: Any, where: str) -> None:
    """Raise a one-line :class:`PluginError` naming what to install if a plugin a run was built with is missing.

    ``records`` is what :func:`plugin_records` gave when the run was made (``meta.json`` -> ``plugins``);
    anything else (an older run, an unreadable file) is taken as "no plugins".
    """
    if not isinstance(records, Mapping):
        return
    for role, record in records.items():
        if role not in ROLES or not isinstance(record, Mapping) or not isinstance(record.get("kind"), str):
            continue
        kind, dist, version = record["kind"], record.get("distribution"), record.get("version")
        plugin = _find(role, kind)
        if plugin is None:
            if dist:
                pin = f"{dist}=={version}" if version else str(dist)
                raise PluginError(
                    f"{where}: built with the {role} {kind!r} from {named(str(dist), version)}, which is not installed here; "
                    f"install it: pip install '{pin}'"
                )
            module = record.get("module") or "its module"
            raise PluginError(
                f"{where}: built with the {role} {kind!r} registered from Python in {module}, which is not registered here; "
                f"call mnist_vae.register_{role}({kind!r}, ...) before opening the run"
            )
        if dist and plugin.distribution == dist and version and plugin.version and plugin.version != version:
            log.warning(f"{where}: built with {dist} {version}; {plugin.version} is installed")
