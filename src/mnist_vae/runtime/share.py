"""Sharing the CPU with the other mnist-vae processes on this machine (no torch import).

Why. torch's CPU build runs its parallel regions on GNU OpenMP (libgomp), whose threads wait for
the next region by spinning (300,000 rounds by default, milliseconds). Alone that is what makes a
training step fast: a step is hundreds of short regions, and each starts at once. Two processes
with a thread per core each put twice as many threads as cores on the machine: each process's
spinning threads take the cores the other needs, every region waits at its barrier for a thread
that is not running, and two trainings on two cores together do a fraction of the work of one
alone. Sleeping at once instead (``OMP_WAIT_POLICY=PASSIVE``) costs much of the speed alone, and a
shorter spin (``GOMP_SPINCOUNT``) made pairs slower still (docs/performance.md, "Side by side", has
the measurements). What works is never to have more threads than cores:

a registry of the mnist-vae processes that compute: a folder of small files, one per process,
each held under an exclusive ``flock`` for the process's life. A killed process's lock goes with
it, so its file counts for nothing and the next scan removes it. A process that shares
(``threads`` 0, the default) takes its part of the cores that the processes with a fixed count
(``--threads N``, which always wins) and the load from outside the registry (what the machine did,
less what this process and the registered ones did: another program, a benchmark) leave free,
and looks again every few seconds. Registered processes that stopped computing (a notebook) leave
their cores to the others.

Priorities count as the kernel weighs them. The kernel shares the CPU first between scheduling
groups (cpu cgroups and, where ``sched_autogroup`` is on, each session's autogroup: every terminal,
every ``setsid``), and only then between the processes of one group by their nice values. So load
from outside the registry at a lower priority than ours (a higher nice value) takes no core from us
when it runs in our group: a ``nice -n 19`` loop started from the same shell, a niced job of the
same session. The same loop in another group (another terminal, a service) gets its group's share
whatever its nice value, and counts as load like any other. A process outside the registry is
looked at one by one only while /proc/stat's ``nice`` column (the user time of niced processes)
moves. Among the sharers the free cores are split by the same rule: each group by its weight
(the kernel's ``sched_prio_to_weight`` of the group's nice value), each group's part among its
sharers by their own weights (nice 0 weighs 1024, each step about 1.25× less, nice 19 weighs 15).
A ``nice -n 19`` study beside a normal training of the same session keeps one thread and leaves
the training the rest; started from another terminal it gets a core, as the kernel gives it one.

``MNIST_VAE_NO_SHARE=1`` turns it off (the old behaviour: one thread per core in every process),
which is how the side-by-side benchmark measures the before.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .kernel import PROC, TICK, Sched, machine_busy_seconds, own_nice, proc_seconds, sched_of, stat_fields, uptime, weights

#: Set (to anything but "" or "0") to turn sharing off.
ENV_OFF = "MNIST_VAE_NO_SHARE"
#: Where the registry lives (default: a per-user folder under the temporary directory).
ENV_DIR = "MNIST_VAE_SHARE_DIR"
#: Seconds between two looks at the registry while a process computes.
RECHECK_S = 2.0
#: A registered process that used less CPU than this (in cores) since the last look is idle
#: (a notebook that trained an hour ago) and leaves its cores to the others.
IDLE_CORES = 0.2
#: Load from processes outside the registry (another program, a benchmark) takes a core from the
#: sharers once it reaches this much of one; less is noise (a shell, the system).
OUTSIDE_CORE = 0.6


def enabled() -> bool:
    """Whether sharing is on (``MNIST_VAE_NO_SHARE`` unset, empty or "0", and flock is available)."""
    return os.environ.get(ENV_OFF, "") in ("", "0") and _has_flock()


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:  # Windows
        return False
    return True


def cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Peer:
    """One registered process: its pid, its fixed thread count (0 = it shares), when it joined, and its place in the scheduler."""

    pid: int
    threads: int
    joined: float
    name: str
    sched: Sched = Sched()


def fair_share(total: int, me: Peer, others: list[Peer], at_least: int = 1, outside: float = 0.0) -> int:
    """This process's threads: the cores the fixed counts and the load from outside the registry
    (``outside``, in cores, as the kernel weighs it) leave, split among those that share by their
    scheduler weights (:func:`weights`; evenly at equal nice values in one group); never less than one.

    ``at_least`` sharers are assumed even before they registered (torchrun's local processes start
    together, in this process's group at its nice value). Cores the shares leave over go to the
    largest remainders, ties to the earliest to join, so that every process, computing the same
    split, hands out each core once.
    """
    if me.threads:
        return me.threads
    busy_outside = int(outside + 1 - OUTSIDE_CORE)  # a core counts as taken from OUTSIDE_CORE of one on
    free = max(0, total - sum(p.threads for p in others) - busy_outside)
    sharers = sorted([me, *(p for p in others if not p.threads)], key=lambda p: (p.joined, p.name))
    pool = [p.sched for p in sharers] + [me.sched] * max(0, at_least - len(sharers))
    return max(1, split(free, weights(pool))[sharers.index(me)])


def split(cores: int, weights: list[float]) -> list[int]:
    """``cores`` whole cores split in proportion to ``weights``: the integer parts, then one more to each of the
    largest remainders (ties: the earlier in the list)."""
    whole = sum(weights)
    quotas = [cores * w / whole for w in weights]
    out = [int(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (out[i] - quotas[i], i))
    for i in order[: cores - sum(out)]:
        out[i] += 1
    return out


def registry_dir() -> Path:
    """The registry's folder: ``$MNIST_VAE_SHARE_DIR``, else ``<tmp>/mnist-vae-<uid>/cpu``."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"mnist-vae-{uid}" / "cpu"


class Registry:
    """This process's entry in the registry, and the scan of the others' (one instance per process)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.fd: int | None = None
        self.path: Path | None = None
        self.me: Peer | None = None
        # pid (or _MACHINE, _NICED, _SELF) -> (monotonic time, CPU seconds, cores used since the look before) at the last look
        self._cpu: dict[int, tuple[float, float, float | None]] = {}

    def join(self, threads: int) -> Peer | None:
        """Register this process (``threads`` 0 = it shares) or change its fixed count; None if the folder is unusable."""
        if self.me is not None and self.me.pid == os.getpid():
            if self.me.threads != threads:
                self.me = Peer(self.me.pid, threads, self.me.joined, self.me.name)
                self._write()
            return self.me
        import fcntl

        folder = self.folder or registry_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            name = f"{os.getpid()}-{time.time_ns()}"
            tmp = folder / f".{name}"
            # Locked before it gets its visible name, so that no scan ever sees it unlocked.
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.fd, self.folder = fd, folder
            self.me = Peer(os.getpid(), threads, time.time(), name)
            self._write()
            os.rename(tmp, folder / name)
        except OSError:
            self._close()
            return None
        self.path = folder / name
        return self.me

    def _write(self) -> None:
        assert self.fd is not None and self.me is not None
        data = json.dumps({"pid": self.me.pid, "threads": self.me.threads, "joined": self.me.joined}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def leave(self) -> None:
        """Remove this process's entry (also done at exit; a killed process's lock goes by itself)."""
        if self.path is not None and self.me is not None and self.me.pid == os.getpid():
            try:
                self.path.unlink()
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = self.path = self.me = None

    def forget_after_fork(self) -> None:
        """In a forked child: the entry is the parent's (the child registers itself if it computes)."""
        self.fd = self.path = self.me = None  # the descriptor stays open: closing it would not release the parent's lock anyway
        self._cpu.clear()

    def others(self) -> list[Peer]:
        """The other live, busy processes; entries of dead processes are removed on the way."""
        return self.look()[0]

    def look(self) -> tuple[list[Peer], float]:
        """The other live, busy processes (with their places in the scheduler), and the cores that
        processes outside the registry kept busy since the last look, less those at a lower priority
        than ours in our group (0 on a first look, after a change of peers, or without /proc).

        Entries of dead processes are removed on the way. A process counts as idle when it used
        under IDLE_CORES since the last look (a notebook that trained an hour ago).
        """
        if self.folder is None:
            return [], 0.0
        try:
            names = [n for n in os.listdir(self.folder) if not n.startswith(".")]
        except OSError:
            return [], 0.0
        now = time.monotonic()
        me = sched_of(os.getpid()) or Sched(own_nice())
        live: list[tuple[Peer, float | None]] = []
        for peer in self._live(names):
            where = sched_of(peer.pid)
            live.append((peer if where is None else replace(peer, sched=where), self._rate(peer.pid, proc_seconds(peer.pid), now)))
        known = {p.pid for p, _ in live} | {os.getpid()}
        niced = self._rate(_NICED, machine_busy_seconds(niced_only=True), now)
        yielded = self._yielding(me, known, now) if (niced is None or niced > 0) and me.nice < 19 else 0.0
        machine = self._rate(_MACHINE, machine_busy_seconds(), now)
        own = self._rate(_SELF, proc_seconds(os.getpid()), now)
        outside = 0.0
        if machine is not None and own is not None and all(r is not None for _, r in live):
            outside = max(0.0, machine - own - sum(r or 0.0 for _, r in live) - yielded)
        return [p for p, r in live if r is None or r >= IDLE_CORES], outside

    def _yielding(self, me: Sched, known: set[int], now: float) -> float:
        """Cores used since the last look by processes outside the registry that the kernel runs only
        on what we leave: a higher nice value than ours, in our group. A process seen for the first
        time counts with its average since it started."""
        seen, total = set(), 0.0
        try:
            pids = [int(n) for n in os.listdir(PROC) if n.isdigit()]
        except OSError:
            return 0.0
        for pid in set(pids) - known:
            fields = stat_fields(pid)
            if fields is None or int(fields[16]) <= me.nice:
                continue
            used = (int(fields[11]) + int(fields[12])) / TICK
            seen.add(pid)
            rate = self._rate(pid, used, now)
            if rate is None:
                age = uptime() - int(fields[19]) / TICK
                rate = used / age if age > 1.0 else 0.0
            if rate >= 0.05 and (other := sched_of(pid)) is not None and other.group == me.group:
                total += rate
        for pid in [k for k in self._cpu if k >= 0 and k not in seen | known]:
            del self._cpu[pid]
        return total

    def _live(self, names: list[str]) -> list[Peer]:
        """The registered processes whose file is locked (alive); files nobody holds are removed."""
        import fcntl

        assert self.folder is not None
        out = []
        for name in names:
            if self.me is not None and name == self.me.name:
                continue
            path = self.folder / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # held: its process is alive
                    peer = _read_peer(fd, name)
                    if peer is not None:
                        out.append(peer)
                else:  # nobody holds it: its process died without removing it
                    with contextlib.suppress(OSError):
                        path.unlink()
            finally:
                os.close(fd)
        return out

    def _rate(self, key: int, used: float | None, now: float) -> float | None:
        """Cores ``key`` used since the last look (None on the first look, or when unknown)."""
        if used is None:
            return None
        before = self._cpu.get(key)
        if before is not None and now - before[0] < 0.5:  # too soon to tell: the last look's figure
            return before[2]
        rate = None if before is None else (used - before[1]) / (now - before[0])
        self._cpu[key] = (now, used, rate)
        return rate


_MACHINE, _NICED, _SELF = -1, -2, -3  # keys of the whole machine's, its niced time's and this process's samples


def _read_peer(fd: int, name: str) -> Peer | None:
    try:
        d = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return Peer(int(d["pid"]), max(0, int(d.get("threads", 0))), float(d.get("joined", 0.0)), name)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being written this instant: counted at the next look


_REGISTRY = Registry()
atexit.register(_REGISTRY.leave)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REGISTRY.forget_after_fork)


def registry() -> Registry:
    """This process's registry entry (the one instance)."""
    return _REGISTRY


def share_threads(threads: int, at_least: int = 1) -> int:
    """Register with ``threads`` (0 = share) and return the threads this process should use now.

    A fixed count is returned as is (and registered, so that the sharers leave it its cores).
    Without the registry (turned off, or no writable folder) a sharer gets ``cores / at_least``.
    """
    if not enabled():
        return threads or max(1, cores() // at_least)
    me = _REGISTRY.join(threads)
    if me is None:
        return threads or max(1, cores() // at_least)
    peers, outside = _REGISTRY.look()
    return fair_share(cores(), replace(me, sched=sched_of(os.getpid()) or Sched(own_nice())), peers, at_least, outside)
