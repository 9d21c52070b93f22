"""How busy the machine is: the side-by-side benchmark waits for an idle machine and records the load from outside.

Linux /proc/stat figures; where there is none, the helpers return None and nothing waits.
"""

from __future__ import annotations

import resource
import time
from typing import Any

from mnist_vae.runtime import share

#: Cores other processes may keep busy for the machine to count as idle (a shell, the system).
IDLE_BELOW = 0.15


def _ours() -> float:
    """CPU seconds of this process and of its children that ended (every product process is waited for)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def busy_cores(seconds: float = 1.0) -> float | None:
    """Cores the whole machine kept busy over ``seconds`` (None where there is no /proc/stat)."""
    b0 = share.machine_busy_seconds()
    time.sleep(seconds)
    b1 = share.machine_busy_seconds()
    return None if b0 is None or b1 is None else (b1 - b0) / seconds


def wait_idle(limit_s: float, idle_below: float = IDLE_BELOW) -> float | None:
    """Wait (up to ``limit_s``) until the machine is idle over 2 s; returns the last load seen."""
    end = time.monotonic() + limit_s
    while True:
        b = busy_cores(2.0)
        if b is None or b < idle_below or time.monotonic() >= end:
            return b
        time.sleep(10)


def measured(fn: Any) -> tuple[dict[str, Any], float | None]:
    """``fn()`` and the cores that processes other than this benchmark's kept busy meanwhile."""
    t0, m0, o0 = time.monotonic(), share.machine_busy_seconds(), _ours()
    out = fn()
    m1 = share.machine_busy_seconds()
    if m0 is None or m1 is None:
        return out, None
    return out, max(0.0, (m1 - m0) - (_ours() - o0)) / (time.monotonic() - t0)
