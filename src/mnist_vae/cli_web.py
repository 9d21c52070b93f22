"""``mnist-vae serve RUN``: the browser explorer (needs the optional ``web`` extra)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

WEB_EXTRA_HINT = "serve needs the web extra: pip install 'mnist-vae[web]'"


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the explorer for ``args.run`` until Ctrl+C."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(f"error: {WEB_EXTRA_HINT}", file=sys.stderr)
        return 2
    from .serve import serve

    try:
        serve(args.run, host=args.host, port=args.port, log=lambda m: print(m, flush=True))
    except KeyboardInterrupt:
        pass
    return 0


def add_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the CLI's subcommands."""
    p = add("serve", cmd_serve, "serve an interactive latent-space explorer for a run in the browser")
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (only this machine by default)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")
