"""What the kernel says about processes and how it shares the CPU among them (Linux /proc; no torch import).

The kernel's scheduler shares the CPU first between scheduling groups (cpu cgroups and, where
``sched_autogroup`` is on, each session's autogroup) by the groups' weights, then among the
processes of one group by theirs; a weight follows the nice value (``sched_prio_to_weight``).
:mod:`mnist_vae.runtime.share` uses this to count load from outside its registry as the kernel
weighs it and to split the cores among its sharers. Where /proc is missing every reader returns
None (or a neutral value) and sharing falls back to counting all load.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

#: The kernel's ``sched_prio_to_weight`` (kernel/sched/core.c): the CPU weight of nice -20 .. 19.
NICE_WEIGHT = (
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
    110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
)  # fmt: skip


def weight(nice: int) -> int:
    """The kernel's scheduler weight of a process at ``nice`` (clamped to -20..19)."""
    return NICE_WEIGHT[min(19, max(-20, nice)) + 20]


@dataclass(frozen=True)
class Sched:
    """Where the kernel's scheduler puts a process: its nice value, its group (cpu cgroup and, where
    autogroups are on, session autogroup) and that group's nice value."""

    nice: int = 0
    group: str = ""
    group_nice: int = 0


def weights(scheds: list[Sched]) -> list[float]:
    """The kernel's share of each process when all compute: each group weighs its nice value's weight,
    split among its processes by theirs."""
    inside: dict[str, int] = {}
    for s in scheds:
        inside[s.group] = inside.get(s.group, 0) + weight(s.nice)
    return [weight(s.group_nice) * weight(s.nice) / inside[s.group] for s in scheds]


#: Where the kernel's figures are read (tests point it at a folder of simulated files).
PROC = Path("/proc")


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds(niced_only: bool = False) -> float | None:
    """CPU seconds the whole machine has been busy (all cores; steal and idle left out) from /proc/stat:
    user, nice, system, irq and softirq; ``niced_only``: the ``nice`` column alone (niced processes' user time)."""
    try:
        v = [int(x) for x in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
        return (v[1] if niced_only else v[0] + v[1] + v[2] + v[5] + v[6]) / TICK
    except (OSError, ValueError, IndexError):
        return None


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None where there are none."""
    try:
        return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def proc_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads); None where there is none."""
    fields = stat_fields(pid)
    try:
        return None if fields is None else (int(fields[11]) + int(fields[12])) / TICK
    except (ValueError, IndexError):
        return None


def sched_of(pid: int) -> Sched | None:
    """``pid``'s nice value, scheduling group and the group's nice value, from /proc; None where there is none.

    The group is the process's cpu cgroup, and its session's autogroup where ``sched_autogroup`` is
    on. What cannot be read makes a group of its own, so that it is never taken for ours."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    try:
        nice = int(fields[16])
    except (ValueError, IndexError):
        return None
    group, group_nice = f"?{pid}", 0
    with contextlib.suppress(OSError):
        lines = [ln.split(":", 2) for ln in (PROC / str(pid) / "cgroup").read_text().splitlines()]
        cpu = [p for h, c, p in lines if "cpu" in c.split(",")] or [p for h, c, p in lines if h == "0"]
        group = cpu[0] if cpu else group
    if autogroups():
        try:
            # The kernel prints nothing for the root autogroup: a process whose session never left init's.
            name, _, level = (PROC / str(pid) / "autogroup").read_text().split()[:3] or ["/autogroup-0", "nice", "0"]
            group, group_nice = f"{group} {name}", int(level)
        except (OSError, ValueError):
            group = f"?{pid}"
    return Sched(nice, group, group_nice)


def autogroups() -> bool:
    try:
        return (PROC / "sys" / "kernel" / "sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def uptime() -> float:
    try:
        return float((PROC / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def own_nice() -> int:
    """This process's nice value (0 where the OS does not say)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0
