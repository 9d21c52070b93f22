"""``mnist-vae serve RUN|--pretrained NAME`` (the browser explorer; needs the ``web`` extra) and ``mnist-vae export RUN``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, MnistVaeError
from .common import Adder

if TYPE_CHECKING:
    from ..runs.folder import Run

WEB_EXTRA_HINT = "serve needs the web extra: pip install 'mnist-vae[web]'"


def run_or_pretrained(args: argparse.Namespace) -> Run | str:
    """``args.run`` (a folder, opened later) or the shipped model ``args.pretrained``, opened now; exactly one of them."""
    if (args.run is None) == (args.pretrained is None):
        raise ConfigError(f"{args.command}: give a run folder or --pretrained NAME (one of them, not both)")
    if args.pretrained is None:
        return str(args.run)
    from ..runs.pretrained import open_pretrained

    return open_pretrained(args.pretrained)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the explorer for ``args.run`` (or the shipped ``--pretrained`` model) until Ctrl+C."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MnistVaeError(WEB_EXTRA_HINT) from None
    from ..serve.app import serve

    run = run_or_pretrained(args)
    try:
        serve(run, host=args.host, port=args.port)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..runs.folder import open_run
    from ..serve.export import export_onnx

    run = open_run(args.run)
    out = Path(args.out) if args.out else run.path / "onnx"
    for p in export_onnx(run.model, out, run.config.name):
        print(p)
    return 0


def add_commands(add: Adder) -> None:
    """Register ``serve`` and ``export``."""
    p = add("serve", cmd_serve, "serve an interactive latent-space explorer for a run (or a shipped trained model) in the browser")
    p.add_argument("run", metavar="RUN", nargs="?", help="a run folder")
    add_pretrained_option(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (only this machine by default)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")

    p = add("export", cmd_export, "write the decoder (z -> image probabilities) and encoder (image -> mu, log sigma^2) as ONNX files")
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--out", help="output folder (default: RUN/onnx)")


def add_pretrained_option(p: argparse.ArgumentParser) -> None:
    """--pretrained NAME: one of the trained models that ship with the package, instead of RUN."""
    p.add_argument(
        "--pretrained",
        metavar="NAME",
        help="instead of RUN: trained weights that ship with the package (`mnist-vae configs` lists them and how they were trained; "
        "the file's SHA-256 is checked before use)",
    )
