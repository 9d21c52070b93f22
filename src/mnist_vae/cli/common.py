"""What the CLI's commands share: the help formatter, the training options and how they become a config."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import BINARIZE_MODES, DATASET_NAMES, PRECISIONS, RunConfig

DEFAULT_CONFIG = "optimized"
#: Flags of `train` that set a training field of the same name.
TRAIN_FLAGS = ("epochs", "seed", "dataset", "data_path", "binarize", "threads", "device", "precision", "batch_size", "lr")

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


def add_dataset_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """--dataset and --data-path."""
    p.add_argument(
        "--dataset",
        default=default,
        choices=DATASET_NAMES,
        help="auto (default): full MNIST if cached or downloadable within seconds, else the embedded 10,000 digits",
    )
    p.add_argument("--data-path", dest="data_path", help="a folder of IDX files or a Keras-style mnist.npz")


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The options that choose and change a configuration."""
    p.add_argument("--config", help=f"a name from `mnist-vae configs` or a .toml file (default: {DEFAULT_CONFIG})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field, e.g. --set latent_dim=2 (repeatable)")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the config's, 50)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the config's)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="batch size (default: 100)")
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    add_dataset_options(p)
    p.add_argument("--binarize", choices=BINARIZE_MODES, help="pixel binarisation (default: none; dynamic = resampled each epoch)")
    p.add_argument(
        "--threads", type=int, help="CPU threads, fixed (default: 0 = the cores, shared with other mnist-vae processes computing beside it)"
    )
    p.add_argument("--device", help="auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument(
        "--precision",
        choices=[p for p in PRECISIONS if p != "auto"] + ["auto"],
        help="autocast precision (default: fp32; auto = bf16 where the hardware computes it natively; fp16 needs cuda/mps)",
    )


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
