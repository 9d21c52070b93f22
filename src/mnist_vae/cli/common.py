"""What the CLI's commands share: the help formatter, the training options and how they become a config."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from ..config import RunConfig, TrainConfig
from ..fields import field_of

DEFAULT_CONFIG = "optimized"
#: Flags of `train` that set a training field of the same name (each made from the field: help, type, choices).
TRAIN_FLAGS = ("epochs", "lr", "batch_size", "seed", "dataset", "data_path", "binarize", "threads", "device", "precision")

Command = Callable[[argparse.Namespace], int]


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells something: not for None (the option falls back
    to the configuration, whose default the help text names) and not twice."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "(default" in text:
            return text
        return super()._get_help_string(action) or text


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig named by --config (preset name or .toml file) with the command-line overrides."""
    from ..config import load_toml
    from ..presets import get_config

    name = args.config or DEFAULT_CONFIG
    cfg = load_toml(name) if name.endswith(".toml") or Path(name).is_file() else get_config(name)
    if args.set:
        cfg = cfg.override(list(args.set))
    changes = {flag: getattr(args, flag) for flag in TRAIN_FLAGS if getattr(args, flag, None) is not None}
    return cfg.replace(**changes) if changes else cfg


def add_field_options(p: argparse.ArgumentParser, cls: type, names: tuple[str, ...], default: str | None = None) -> None:
    """One option per dataclass field of ``cls`` named in ``names`` (``data_path`` -> ``--data-path``).

    The option's help, type and choices come from the field (:func:`~mnist_vae.fields.described`,
    its type hint). ``default``: what a left-out option means, shown in the help ("the
    configuration's"); the option's value is then None. Without it, the field's own default is the
    option's (a bool field becomes a switch).
    """
    for name in names:
        f, hint = field_of(cls, name)
        choices = f.metadata.get("choices") or (get_args(hint) if get_origin(hint) is Literal else None)
        shown = default if default is not None else f.default
        flag = "--" + name.replace("_", "-")
        text = f.metadata["help"] if shown is None else f"{f.metadata['help']} (default: {shown})"
        if hint is bool and default is None:
            p.add_argument(flag, dest=name, action="store_true", help=f.metadata["help"])
        else:
            kind: Callable[[str], Any] = hint if hint in (int, float) and not choices else str
            p.add_argument(flag, dest=name, type=kind, choices=choices, default=None if default else f.default, help=text)


def add_dataset_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--dataset and --data-path (``default``: --dataset's value when left out; None: the configuration's)."""
    add_field_options(p, TrainConfig, ("dataset",), default=default or "the configuration's")
    add_field_options(p, TrainConfig, ("data_path",), default="none" if default else "the configuration's")
    p.set_defaults(dataset=default)


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options that choose and change a configuration: --config, --set and one per field of TRAIN_FLAGS."""
    p.add_argument("--config", help=f"a name from `mnist-vae configs` or a .toml file (default: {DEFAULT_CONFIG})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field, e.g. --set latent_dim=2 (repeatable)")
    add_field_options(p, TrainConfig, TRAIN_FLAGS, default="the configuration's")


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """--threads for commands that only compute."""
    p.add_argument(
        "--threads", type=int, help="CPU threads, fixed (default: the cores, shared with other mnist-vae processes computing beside it)"
    )


def set_threads_from(args: argparse.Namespace) -> None:
    """Apply --threads: that many, fixed; without it, this process's share of the cores (runtime/share.py)."""
    from ..errors import ConfigError
    from ..runtime.process import set_threads

    threads = getattr(args, "threads", None) or 0
    if threads < 0:
        raise ConfigError(f"--threads: must be >= 0 (0 = the cores, shared), got {threads}")
    set_threads(threads)


Adder = Callable[..., argparse.ArgumentParser]
Registry = dict[str, Any]
