"""CLI pieces for devices and tools: ``train --nproc N`` / ``--tensorboard`` and the ``export`` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from .errors import MnistVaeError


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """The ``train`` options that belong to this module."""
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine, started by torch's elastic launcher "
                        "(the same as `torchrun --standalone --nproc_per_node N -m mnist_vae train ...`); --batch-size is per process")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log scalars, sample grids and hyper-parameters to RUN/tb/ (needs: pip install 'mnist-vae[tensorboard]')")


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch_nproc(nproc: int, argv: list[str]) -> int:
    """Start ``python -m mnist_vae ARGV`` in ``nproc`` processes through ``torch.distributed.run``; returns the exit code."""
    from .distributed import env_world_size

    if nproc < 1:
        raise MnistVaeError(f"--nproc: must be >= 1, got {nproc}")
    if env_world_size() > 1:
        raise MnistVaeError("--nproc: already running under torchrun; give the process count to torchrun only")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun would otherwise print a banner and pin every process to 1 thread; train() sets
    # threads per process itself (cores / processes on the machine).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    launch = ["--standalone", f"--nproc_per_node={nproc}", "--module", "mnist_vae", *strip_nproc(argv)]
    try:
        run(get_args_parser().parse_args(launch))
    except ChildFailedError as exc:
        _rank, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .runs import open_run

    run = open_run(args.run, warn=lambda m: print(m, file=sys.stderr))
    out = Path(args.out) if args.out else run.path / "onnx"
    for p in export_onnx(run.model, out, run.config.name):
        print(p)
    return 0


def add_commands(sub: argparse._SubParsersAction, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``export``."""
    p = add("export", cmd_export, "write the decoder (z -> image probabilities) and encoder (image -> mu, log sigma^2) as ONNX files")
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="file format")
    p.add_argument("--out", help="output folder (default: RUN/onnx)")
