"""``train --nproc N``: start the same command in N processes through torch's elastic launcher."""

from __future__ import annotations

import os
import signal
import sys

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
        rank, failure = exc.get_first_failure()
        if failure.exitcode is not None and failure.exitcode < 0:  # killed by a signal: it could say nothing itself
            print(killed_message(rank, nproc, failure.pid, -failure.exitcode, argv), file=sys.stderr)
            return 128 - failure.exitcode
        return failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0


def killed_message(rank: int, nproc: int, pid: int, signum: int, argv: list[str]) -> str:
    """What to tell the user when one of the processes died of a signal (it printed nothing of its own)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    out = _option(argv, "--resume") or _option(argv, "--out") or "RUN"
    cause = {
        "SIGKILL": "the system killed it (out of memory, or someone's kill -9)",
        "SIGABRT": "a library it runs aborted (torch's gloo transport, OpenMP); its own last lines are above",
        "SIGSEGV": "it crashed inside a library; its own last lines are above",
    }.get(name, "it was stopped from outside")
    return (
        f"error: process {rank} of {nproc} (pid {pid}) died of {name}: {cause}; the others were stopped. "
        f"Checkpoints already written are intact: continue with `mnist-vae train --resume {out} --nproc {nproc}`"
        + (" (RUN: the run folder named above)" if out == "RUN" else "")
        + ", or start again"
    )


def _option(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None
