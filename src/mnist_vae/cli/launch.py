"""``train --nproc N``: start the same command in N processes through torch's elastic launcher."""

from __future__ import annotations

import os

from ..errors import MnistVaeError


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
    from ..runtime.distributed import env_world_size

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
