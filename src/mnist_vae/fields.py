"""Typed fields for the configs: plugin options as a read-only table, and checking values against type hints.

The machinery under :mod:`mnist_vae.config`: :class:`Options` (a plugin's ``[model.encoder_options]``),
the checks that turn a TOML value into a field's type with one-line errors naming the field, and
writing values back as TOML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import Field, field, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from .errors import ConfigError


class Options(Mapping[str, Any]):
    """A plugin's options as the config gives them (``[model.encoder_options]``): a read-only, hashable table.

    Values are TOML values: booleans, numbers, strings, lists (kept as tuples) and tables (kept as
    :class:`Options`). The plugin checks the names and types when the model is built
    (models/registry.py); only the options given are stored, not the plugin's defaults.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None, name: str = "options") -> None:
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{name}: expected a table of options, got {type(data).__name__}")
        self._data: dict[str, Any] = {}
        for key, value in (data or {}).items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"{name}: option names must be non-empty strings, got {key!r}")
            self._data[key] = freeze(value, f"{name}.{key}")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __repr__(self) -> str:
        return f"Options({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return Options, (self._data,)

    def to_plain(self) -> dict[str, Any]:
        """A plain dict (lists for tuples, dicts for tables), as JSON and TOML write it."""
        return json.loads(json.dumps(self._data, default=plain))


def freeze(value: Any, name: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, f"{name}[{i}]") for i, v in enumerate(value))
    if isinstance(value, Mapping):
        return Options(value, name)
    raise ConfigError(f"{name}: {value!r} is not a TOML value (a boolean, number, string, list or table)")


def plain(value: Any) -> Any:
    if isinstance(value, Options):
        return dict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def described(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field's default with its one-line ``help`` (and ``choices``, where its type does not name them):
    the command-line option made for the field shows them (``cli/common.py:add_field_options``)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def field_of(cls: type, name: str) -> tuple[Field, Any]:
    """The dataclass field ``name`` of ``cls`` and its type hint, ``X | None`` read as ``X``."""
    hint = get_type_hints(cls)[name]
    plain_hints = [a for a in get_args(hint) if a is not type(None)] if get_origin(hint) is not Literal else []
    if len(plain_hints) == 1:  # Optional[X]
        hint = plain_hints[0]
    return next(f for f in fields(cls) if f.name == name), hint


def check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}: must be a positive integer, got {value!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def build(cls: type, data: Any, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    hints = get_type_hints(cls)
    valid = field_names(cls)
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(map(str, unknown))}; valid keys: {', '.join(sorted(valid)) or 'none'}")
    kwargs = {k: coerce(k, v, hints[k], source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a plugin's options dataclass: a missing field, its own checks
        raise ConfigError(f"{source}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none), for a one-line report."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Check ``value`` against the annotation ``hint``, converting lists to tuples and ints to floats."""
    if hint is Any:  # checked by the dataclass itself (a kind's options)
        return value
    origin = get_origin(hint)
    bad = ConfigError(f"{source}: {name} = {value!r} is not a valid {hint_name(hint)}")
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{source}: {name} = {value!r} is not one of {', '.join(map(str, get_args(hint)))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(f"{name}[{i}]", v, args[0], source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: {name} needs {len(args)} values, got {len(value)}")
        return tuple(coerce(f"{name}[{i}]", v, a, source) for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            raise ConfigError(f"{source}: {name} = {value} is too large") from None
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if hint is Options:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {name} = {value!r} is not a table of options (e.g. {name} = {{ hidden = 64 }})")
        return Options(value, name)
    raise bad  # pragma: no cover - every field type is handled above


def hint_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is tuple:
        return "list"
    return getattr(hint, "__name__", str(hint))


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table: options
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
