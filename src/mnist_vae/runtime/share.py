"""Sharing the CPU with the other mnist-vae processes on this machine (no torch import).

Why. torch's CPU build runs its parallel regions on GNU OpenMP (libgomp), whose threads wait for
the next region by spinning (300,000 rounds by default, milliseconds). Alone that is what makes a
training step fast: a step is hundreds of short regions, and each starts at once. Two processes
with a thread per core each put twice as many threads as cores on the machine: each process's
spinning threads take the cores the other needs, every region waits at its barrier for a thread
that is not running, and two trainings on two cores together ran at 0.16-0.30× of one alone
(docs/performance.md, "Side by side"). Sleeping at once instead (``OMP_WAIT_POLICY=PASSIVE``)
halves the speed alone; a shorter spin (``GOMP_SPINCOUNT``) made pairs slower still. What works
is never to have more threads than cores:

a registry of the mnist-vae processes that compute: a folder of small files, one per process,
each held under an exclusive ``flock`` for the process's life. A killed process's lock goes with
it, so its file counts for nothing and the next scan removes it. A process that shares
(``threads`` 0, the default) takes its part of the cores that the processes with a fixed count
(``--threads N``, which always wins) and the load from outside the registry (what the machine did,
less what this process and the registered ones did: another program, a benchmark) leave free,
and looks again every few seconds. Registered processes that stopped computing (a notebook) leave
their cores to the others.

Priorities count as the kernel weighs them. Load from outside at a lower priority than ours (a
higher nice value: a ``nice -n 19`` loop, a niced backup) takes no core from us, since the kernel
runs it only on what we leave; load at our priority or higher does. /proc/stat keeps the time of
processes with nice > 0 in a column of its own, so a process at nice 0 or below leaves that column
out (and, of the registered processes, only what sits in the columns it counts). A niced process
(nice > 0) cannot tell from /proc/stat whether an outside process is niced more or less than it,
and counts all of it. Among the sharers the free cores are split in proportion to each one's
scheduler weight (the kernel's ``sched_prio_to_weight``: nice 0 weighs 1024, each step about
1.25× less, nice 19 weighs 15), so a ``nice -n 19`` study beside a normal training keeps one
thread and leaves the training the rest.

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
class Peer:
    """One registered process: its pid, its fixed thread count (0 = it shares), when it joined, and its nice value."""

    pid: int
    threads: int
    joined: float
    name: str
    nice: int = 0


def fair_share(total: int, me: Peer, others: list[Peer], at_least: int = 1, outside: float = 0.0) -> int:
    """This process's threads: the cores the fixed counts and the load from outside the registry
    (``outside``, in cores, at our priority or higher) leave, split among those that share in
    proportion to their scheduler weights (evenly at equal nice values); never less than one.

    ``at_least`` sharers are assumed even before they registered (torchrun's local processes start
    together, at this process's nice value). Cores the shares leave over go to the largest
    remainders, ties to the earliest to join, so that every process, computing the same split,
    hands out each core once.
    """
    if me.threads:
        return me.threads
    busy_outside = int(outside + 1 - OUTSIDE_CORE)  # a core counts as taken from OUTSIDE_CORE of one on
    free = max(0, total - sum(p.threads for p in others) - busy_outside)
    sharers = sorted([me, *(p for p in others if not p.threads)], key=lambda p: (p.joined, p.name))
    weights = [weight(p.nice) for p in sharers] + [weight(me.nice)] * max(0, at_least - len(sharers))
    return max(1, split(free, weights)[sharers.index(me)])


def split(cores: int, weights: list[int]) -> list[int]:
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
        # (what, pid) -> (monotonic time, CPU seconds, cores used since the look before) at the last look; what is
        # "cpu" (all of a process's time: is it busy?) or "counted" (its part in the columns this process counts)
        self._cpu: dict[tuple[str, int], tuple[float, float, float | None]] = {}

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
        me = self.me
        data = json.dumps({"pid": me.pid, "threads": me.threads, "joined": me.joined, "nice": own_nice()}).encode()
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
        """The other live, busy processes (with their nice values), and the cores that processes outside
        the registry at our priority or higher kept busy since the last look (0 on a first look, after a
        change of peers, or without /proc).

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
        mine = proc_cpu(os.getpid())
        my_nice = mine.nice if mine is not None else own_nice()
        live: list[tuple[Peer, float | None, float | None]] = []  # (peer, cores it used, cores it used in the counted columns)
        for peer in self._live(names):
            cpu = proc_cpu(peer.pid)
            if cpu is not None:
                peer = Peer(peer.pid, peer.threads, peer.joined, peer.name, cpu.nice)  # its nice now (renice)
            used = self._rate(("cpu", peer.pid), None if cpu is None else cpu.seconds, now)
            live.append((peer, used, self._rate(("counted", peer.pid), counted_seconds(cpu, my_nice), now)))
        for key in [k for k in self._cpu if k[1] not in {p.pid for p, _, _ in live} | {_MACHINE, _SELF}]:
            del self._cpu[key]
        machine = self._rate(("counted", _MACHINE), machine_busy_seconds(niced=my_nice > 0), now)
        own = self._rate(("counted", _SELF), counted_seconds(mine, my_nice), now)
        outside = 0.0
        if machine is not None and own is not None and all(c is not None for _, _, c in live):
            outside = max(0.0, machine - own - sum(c or 0.0 for _, _, c in live))
        return [p for p, r, _ in live if r is None or r >= IDLE_CORES], outside

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

    def _rate(self, key: tuple[str, int], used: float | None, now: float) -> float | None:
        """Cores ``key`` used since the last look (None on the first look, or when unknown)."""
        if used is None:
            return None
        before = self._cpu.get(key)
        if before is not None and now - before[0] < 0.5:  # too soon to tell: the last look's figure
            return before[2]
        rate = None if before is None else (used - before[1]) / (now - before[0])
        self._cpu[key] = (now, used, rate)
        return rate


_MACHINE, _SELF = -1, -2  # keys of the whole machine's and this process's samples


def _read_peer(fd: int, name: str) -> Peer | None:
    try:
        d = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return Peer(int(d["pid"]), max(0, int(d.get("threads", 0))), float(d.get("joined", 0.0)), name, int(d.get("nice", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # being written this instant: counted at the next look


#: Where the kernel's figures are read (tests point it at a folder of simulated files).
PROC = Path("/proc")


def machine_busy_seconds(niced: bool = True) -> float | None:
    """CPU seconds the whole machine has been busy (all cores; steal and idle left out) from /proc/stat:
    user + system + irq + softirq, and the ``nice`` column (the user time of processes with nice > 0)
    unless ``niced`` is False."""
    try:
        v = [int(x) for x in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
        return (v[0] + (v[1] if niced else 0) + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class ProcCpu:
    """One process's CPU seconds (user + system, all its threads), the system part of them, and its nice value."""

    seconds: float
    system: float
    nice: int


def proc_cpu(pid: int) -> ProcCpu | None:
    """``pid``'s CPU time and nice value from /proc/<pid>/stat; None where there is none."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
        tick = os.sysconf("SC_CLK_TCK")
        return ProcCpu((int(fields[11]) + int(fields[12])) / tick, int(fields[12]) / tick, int(fields[16]))
    except (OSError, ValueError, IndexError):
        return None


def counted_seconds(cpu: ProcCpu | None, my_nice: int) -> float | None:
    """The part of a process's CPU seconds that sits in the /proc/stat columns a process at ``my_nice`` counts
    (:func:`machine_busy_seconds` with ``niced=my_nice > 0``): the user time of a niced process is in the
    ``nice`` column, which a process at nice 0 or below leaves out."""
    if cpu is None:
        return None
    return cpu.seconds if my_nice > 0 or cpu.nice <= 0 else cpu.system


def own_nice() -> int:
    """This process's nice value (0 where the OS does not say)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


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
    return fair_share(cores(), replace(me, nice=own_nice()), peers, at_least, outside)
