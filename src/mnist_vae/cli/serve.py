"""``mnist-vae serve RUN`` (the browser explorer; needs the ``web`` extra) and ``mnist-vae export RUN``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MnistVaeError
from .common import Adder

WEB_EXTRA_HINT = "serve needs the web extra: pip install 'mnist-vae[web]'"


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the explorer for ``args.run`` until Ctrl+C."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MnistVaeError(WEB_EXTRA_HINT) from None
    from ..serve.app import serve

    try:
        serve(args.run, host=args.host, port=args.port)
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
    p = add("serve", cmd_serve, "serve an interactive latent-space explorer for a run in the browser")
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (only this machine by default)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")

    p = add("export", cmd_export, "write the decoder (z -> image probabilities) and encoder (image -> mu, log sigma^2) as ONNX files")
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--out", help="output folder (default: RUN/onnx)")
