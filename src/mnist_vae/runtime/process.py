"""This process: torch's thread count (shared with other mnist-vae processes), peak resident memory, stop signals."""

from __future__ import annotations

import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from . import share
from .distributed import env_local_world_size


def set_threads(threads: int, at_least: int | None = None) -> int:
    """Set torch's intra-op threads and return the number in use now.

    ``threads`` > 0 is that many, fixed. 0 shares the machine: this process takes its part of the
    cores that the other mnist-vae processes computing beside it leave (``at_least`` sharers
    assumed; by default torchrun's processes on this machine), and looks again every few seconds
    while it computes (runtime/share.py); alone, or with ``MNIST_VAE_NO_SHARE=1``, that is one
    thread per core (cores / processes under torchrun).
    """
    sharers = env_local_world_size() if at_least is None else at_least
    n = share.share_threads(threads, sharers)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if threads == 0 and share.enabled():
        _follow.start(sharers, n)
    else:
        _follow.stop()
    return n


class _Follow:
    """A sharing process looks at the registry again every few seconds, from the thread that computes.

    OpenMP's thread count belongs to the calling thread, so a timer thread could not change it; a
    global hook before every module's forward costs a clock read between two looks. Whoever sets
    torch's thread count by other means (a test, a notebook) takes over: the looks stop.
    """

    def __init__(self) -> None:
        self.at_least = 0  # 0: not following
        self.threads = 0  # the count this set last
        self.next_look = 0.0
        self.hook: Any = None

    def start(self, at_least: int, threads: int) -> None:
        self.at_least, self.threads = at_least, threads
        self.next_look = time.monotonic() + share.RECHECK_S
        if self.hook is None:
            self.hook = torch.nn.modules.module.register_module_forward_pre_hook(self.look)

    def stop(self, remove: bool = True) -> None:
        self.at_least = 0
        if remove and self.hook is not None:  # not from inside the hook: torch is iterating over the hooks
            self.hook.remove()
            self.hook = None

    def look(self, _module: Any, _args: Any) -> None:
        if not self.at_least:
            return
        now = time.monotonic()
        if now < self.next_look:
            return
        self.next_look = now + share.RECHECK_S
        if torch.get_num_threads() != self.threads:  # set elsewhere since: not ours to change any more
            self.stop(remove=False)
            return
        n = share.share_threads(0, self.at_least)
        if n != self.threads:
            torch.set_num_threads(n)
            self.threads = n


_follow = _Follow()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


@contextmanager
def stop_signals() -> Iterator[dict[str, int]]:
    """Turn SIGINT/SIGTERM into a flag (``flag["signum"]``) that a loop checks between steps.

    Only the main thread can install handlers; elsewhere the flag simply never gets set.
    """
    flag: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: Any) -> None:
        flag["signum"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
