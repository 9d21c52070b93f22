"""The ``mnist-vae`` command: one small module per command group, all thin wrappers over the library.

Every error the user can cause is an :class:`~mnist_vae.errors.MnistVaeError`; :func:`main` prints
it as one line on stderr and exits 2 (1 for a diverged run, 130/143 after SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import MnistVaeError, TrainingDiverged
from ..runtime import logging as runlog
from . import evaluate, pictures, score, serve, study, train
from .common import Command, DefaultsHelp, resolve_config

__all__ = ["build_parser", "main", "resolve_config"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="mnist-vae",
        description="Train, evaluate and explore a VAE for handwritten digits (LSTM row encoder, transposed-conv decoder).",
    )
    parser.add_argument("--version", action="version", version=f"mnist-vae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help: str, log_stream: str = "stdout") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=DefaultsHelp)
        p.set_defaults(func=func, log_stream=log_stream)
        return p

    for group in (train, pictures, evaluate, study, serve, score):
        group.add_commands(add)
    return parser


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc N` re-launches with these
    runlog.configure(args.log_stream)  # progress messages: stdout for train and the pictures, stderr for the measurements
    from ..training import Interrupted

    try:
        return args.func(args)
    except Interrupted as exc:
        name = {int(signal.SIGINT): "SIGINT", int(signal.SIGTERM): "SIGTERM"}.get(exc.signum, "stop")
        if runlog.is_main_process():  # every torchrun process stops; one of them says so
            _err(f"stopped by {name}: saved {exc.checkpoint}; continue with --resume {exc.checkpoint.parent.parent}")
        return 128 + exc.signum if exc.signum else 1
    except TrainingDiverged as exc:
        _err(f"error: {exc}")
        return 1
    except MnistVaeError as exc:
        _err(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except OSError as exc:  # an I/O failure no write site turned into a WriteError
        where = f"{exc.filename}: " if exc.filename else ""
        _err(f"error: {where}{exc.strerror or exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
