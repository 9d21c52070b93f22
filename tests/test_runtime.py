"""The runtime layer: progress displays that suit the output, the package's log lines, and the CPU shared between processes."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from mnist_vae.runtime import kernel, process, share
from mnist_vae.runtime import logging as runlog

from _runs import SRC
from helpers import write_npz


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_is_a_line_every_interval_not_every_update(monkeypatch):
    err, clock = io.StringIO(), _Clock()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(runlog.time, "monotonic", clock)
    bar = runlog.progress(10_000, "NLL K=1000", interval=30.0)
    for _ in range(10_000):  # 0.1 s per update: 1,000 s in all
        clock.now += 0.1
        bar.update(1)
    bar.close()
    lines = err.getvalue().splitlines()
    assert 30 <= len(lines) <= 34  # one per 30 s, not 10,000
    assert lines[0].startswith("NLL K=1000: 300/10,000 img (3%), 30 s elapsed, about 970 s left")
    assert "\r" not in err.getvalue()


def test_progress_on_a_terminal_is_a_tqdm_bar(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    bar = runlog.progress(10, "x")
    assert type(bar).__name__ == "tqdm"
    bar.close()
    assert runlog.progress(10, "x", enabled=False) is None


def test_warnings_go_to_stderr_and_info_to_the_chosen_stream(capsys):
    runlog.configure("stdout")
    log = logging.getLogger("mnist_vae.test")
    log.info("hello")
    log.warning("careful")
    out, err = capsys.readouterr()
    assert out == "hello\n" and err == "warning: careful\n"


def test_training_into_a_pipe_prints_epoch_lines_not_a_bar(tmp_path):
    npz = write_npz(tmp_path / "d.npz")
    cmd = [
        sys.executable,
        "-m",
        "mnist_vae",
        "train",
        "--config",
        "optimized",
        "--data-path",
        str(npz),
        "--epochs",
        "2",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "r"),
    ]
    p = subprocess.run(cmd, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and len(p.stderr.splitlines()) <= 2  # no bar redrawn into the log
    assert sum(line.startswith("epoch ") for line in p.stdout.splitlines()) == 2


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    logging.getLogger("mnist_vae").setLevel(logging.NOTSET)


# --- sharing the CPU (runtime/share.py) ---

PEER = (
    "import os, sys, time; from pathlib import Path; from mnist_vae.runtime import share; os.nice(int(sys.argv[3])); "
    "share.Registry(Path(sys.argv[1])).join(int(sys.argv[2])); print('joined', flush=True); time.sleep(120)"
)


@pytest.fixture
def peer(tmp_path):
    """Start processes that register in tmp_path/registry (``threads`` 0 = they share) and idle; killed at the end."""
    procs = []

    def start(threads: int = 0, nice: int = 0, session: bool = False) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, "-c", PEER, str(tmp_path / "registry"), str(threads), str(nice)],
            start_new_session=session,
            env={**os.environ, "PYTHONPATH": str(SRC)},
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == "joined"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def _me(threads: int = 0, joined: float = 1.0) -> share.Peer:
    return share.Peer(os.getpid(), threads, joined, "me")


def test_fair_share_splits_what_the_fixed_counts_leave_among_the_sharers():
    other = lambda threads, joined=0.0, name="o": share.Peer(1, threads, joined, name)  # noqa: E731
    assert share.fair_share(2, _me(), []) == 2  # alone: every core
    assert share.fair_share(2, _me(), [other(0)]) == 1
    assert share.fair_share(2, _me(), [other(1)]) == 1  # a fixed --threads 1 beside it
    assert share.fair_share(2, _me(), [other(2)]) == 1  # never 0
    assert share.fair_share(2, _me(3), [other(0)]) == 3  # a fixed count wins, whatever the others do
    # 5 cores, 2 sharers: the earlier gets the remainder, so every core is handed out once.
    assert share.fair_share(5, _me(joined=1.0), [other(0, joined=2.0)]) == 3
    assert share.fair_share(5, _me(joined=3.0), [other(0, joined=2.0)]) == 2
    assert share.fair_share(2, _me(), [], at_least=2) == 1  # torchrun's processes, before the others registered
    assert share.fair_share(2, _me(), [], outside=0.3) == 2  # a shell, the system: noise
    assert share.fair_share(2, _me(), [], outside=0.9) == 1  # another program on a core
    assert share.fair_share(4, _me(), [other(0)], outside=2.0) == 1


def test_split_hands_out_each_core_once_in_proportion_to_the_weights():
    assert kernel.weight(0) == 1024 and kernel.weight(19) == 15 and kernel.weight(40) == 15 and kernel.weight(-25) == 88761
    assert all(1.19 < kernel.weight(n) / kernel.weight(n + 1) < 1.3 for n in range(-20, 19))  # each step about 1.25x
    assert share.split(5, [1, 1]) == [3, 2]  # equal weights: the remainder to the earlier
    assert share.split(2, [1024, 15]) == [2, 0]
    assert share.split(2, [1024, 526]) == [1, 1]  # nice 3 weighs about half: one core each
    assert share.split(4, [1024, 526]) == [3, 1]
    for cores in range(1, 9):
        for weights in ([1024, 15], [1024, 1024, 110], [335, 1024, 23, 88761], [7]):
            assert sum(share.split(cores, weights)) == cores


def test_a_niced_sharer_takes_a_share_by_its_scheduler_weight_within_its_group_only():
    here, there = kernel.Sched(0, "/ a"), kernel.Sched(19, "/ a")
    normal, niced = share.Peer(1, 0, 1.0, "a", here), share.Peer(2, 0, 2.0, "b", there)
    # A nice -n 19 study beside a normal training of the same session on 2 cores: the training keeps both, the study one thread.
    assert share.fair_share(2, normal, [niced]) == 2
    assert share.fair_share(2, niced, [normal]) == 1
    slightly = share.Peer(2, 0, 2.0, "b", kernel.Sched(3, "/ a"))
    assert share.fair_share(4, normal, [slightly]) == 3 and share.fair_share(4, slightly, [normal]) == 1
    assert share.fair_share(2, niced, [], at_least=2) == 1  # torchrun's processes, niced together: still even
    # The same study started from another terminal (another autogroup): the kernel shares between the groups first.
    apart = share.Peer(2, 0, 2.0, "b", kernel.Sched(19, "/ b"))
    assert share.fair_share(2, normal, [apart]) == 1 and share.fair_share(2, apart, [normal]) == 1
    # A group's own nice value (renice of an autogroup) weighs the group; its processes split its part.
    low_group = [share.Peer(3, 0, 3.0, "c", kernel.Sched(0, "/ b", 19)), share.Peer(4, 0, 4.0, "d", kernel.Sched(0, "/ b", 19))]
    assert share.fair_share(4, normal, low_group) == 4 and share.fair_share(4, low_group[0], [normal, low_group[1]]) == 1
    assert kernel.weights([here, there, kernel.Sched(0, "/ b"), kernel.Sched(0, "/ b")]) == pytest.approx(
        [1024 * 1024 / 1039, 1024 * 15 / 1039, 512, 512]
    )


TICK = kernel.TICK


class FakeProc:
    """A simulated /proc: /proc/stat's first line, uptime, the autogroup switch, and per process its stat
    (CPU seconds, nice value, start), cgroup and autogroup."""

    def __init__(self, root, clock) -> None:
        self.root, self.clock = root, clock
        self.cpu = {"user": 0.0, "nice": 0.0, "system": 0.0}
        (root / "sys" / "kernel").mkdir(parents=True)
        self.autogroups(True)
        self.write()

    def autogroups(self, on: bool) -> None:
        (self.root / "sys" / "kernel" / "sched_autogroup_enabled").write_text("1\n" if on else "0\n")

    def add(self, **seconds: float) -> None:
        for k, v in seconds.items():
            self.cpu[k] += v
        self.write()

    def write(self) -> None:
        c = {k: round(v * TICK) for k, v in self.cpu.items()}
        (self.root / "stat").write_text(f"cpu  {c['user']} {c['nice']} {c['system']} 900000 10 0 0 0 0 0\ncpu0 1 2 3\n")
        (self.root / "uptime").write_text(f"{1000 + self.clock.now:.2f} 5.00\n")

    def process(self, pid: int, user: float, nice: int = 0, group: int | None = 1, cgroup: str = "/", started: float = 0.0) -> None:
        """``pid`` has used ``user`` CPU seconds, at ``nice``, in autogroup ``group`` (None: the root one, which the kernel
        prints as nothing) of ``cgroup``, since ``started`` s of uptime."""
        (self.root / str(pid)).mkdir(exist_ok=True)
        fields = ["R", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(round(user * TICK)), "0"]
        fields += ["0", "0", str(20 + nice), str(nice), "1", "0", str(round(started * TICK))]
        (self.root / str(pid) / "stat").write_text(f"{pid} (python x) " + " ".join(fields) + "\n")
        (self.root / str(pid) / "cgroup").write_text(f"4:memory:/m\n1:cpu,cpuacct:{cgroup}\n0::/\n")
        (self.root / str(pid) / "autogroup").write_text("" if group is None else f"/autogroup-{group} nice 0\n")


@pytest.fixture
def fake_proc(tmp_path, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(share.time, "monotonic", clock)
    proc = FakeProc(tmp_path / "proc", clock)
    monkeypatch.setattr(kernel, "PROC", proc.root)
    monkeypatch.setattr(share, "PROC", proc.root)
    return proc


LOOP = 4242  # a busy loop outside the registry


def _outside(proc: FakeProc, loop_nice: int, my_nice: int = 0, my_group: int | None = 1, **where) -> tuple[float, int]:
    """This process computes on one core and a busy loop (``where``: its group, cgroup) on the other for 2 s:
    the load from outside the registry the second look sees, and this process's threads on 2 cores."""
    reg = share.Registry(proc.root.parent / "registry")
    me = reg.join(0)
    proc.process(os.getpid(), 0.0, my_nice, my_group)
    proc.process(LOOP, 0.0, loop_nice, **where)
    reg.look()
    proc.clock.now += 2.0
    niced = {"nice": 2.0 if loop_nice > 0 else 0.0, "user": 0.0 if loop_nice > 0 else 2.0}
    proc.add(**{k: niced[k] + (2.0 if (k == "nice") == (my_nice > 0) else 0.0) for k in niced})
    proc.process(os.getpid(), 2.0, my_nice, my_group)
    proc.process(LOOP, 2.0, loop_nice, **where)
    peers, outside = reg.look()
    threads = share.fair_share(2, replace(me, sched=kernel.sched_of(os.getpid())), peers, outside=outside)
    reg.leave()
    return outside, threads


def test_load_at_our_priority_from_outside_the_registry_takes_a_core(fake_proc):
    assert _outside(fake_proc, loop_nice=0) == (pytest.approx(1.0), 1)


def test_a_lower_priority_loop_of_our_group_takes_no_core(fake_proc):
    assert _outside(fake_proc, loop_nice=19) == (pytest.approx(0.0), 2)  # the kernel runs it on what we leave
    fake_proc.autogroups(False)
    assert _outside(fake_proc, loop_nice=19, group=7) == (pytest.approx(0.0), 2)  # autogroups off: the session does not matter


def test_processes_of_the_root_autogroup_share_one_group(fake_proc):
    # A process whose session is still init's (a CI runner, a service): its autogroup file is empty.
    fake_proc.process(os.getpid(), 0.0, group=None)
    fake_proc.process(LOOP, 0.0, 19, group=None)
    fake_proc.process(LOOP + 1, 0.0, 19, group=3)
    mine, loop, apart = (kernel.sched_of(p) for p in (os.getpid(), LOOP, LOOP + 1))
    assert mine is not None and loop is not None and apart is not None
    assert mine.group == loop.group != apart.group and not mine.group.startswith("?")
    assert _outside(fake_proc, loop_nice=19, my_group=None, group=None) == (pytest.approx(0.0), 2)
    assert _outside(fake_proc, loop_nice=19, my_group=None, group=5) == (pytest.approx(1.0), 1)


def test_a_lower_priority_loop_of_another_group_takes_a_core_as_the_kernel_gives_it_one(fake_proc):
    assert _outside(fake_proc, loop_nice=19, group=7) == (pytest.approx(1.0), 1)  # another terminal's session
    assert _outside(fake_proc, loop_nice=19, cgroup="/system.slice/backup.service") == (pytest.approx(1.0), 1)


def test_a_niced_process_yields_to_equal_or_higher_priorities_only(fake_proc):
    assert _outside(fake_proc, loop_nice=10, my_nice=10) == (pytest.approx(1.0), 1)
    assert _outside(fake_proc, loop_nice=0, my_nice=10) == (pytest.approx(1.0), 1)
    assert _outside(fake_proc, loop_nice=19, my_nice=10) == (pytest.approx(0.0), 2)


def test_a_loop_first_seen_between_two_looks_counts_with_its_average_since_it_started(fake_proc):
    reg = share.Registry(fake_proc.root.parent / "registry")
    reg.join(0)
    fake_proc.process(os.getpid(), 0.0)
    reg.look()
    fake_proc.clock.now += 2.0
    fake_proc.add(user=2.0, nice=1.5)
    fake_proc.process(os.getpid(), 2.0)
    fake_proc.process(LOOP, 1.5, 19, started=1000 + fake_proc.clock.now - 1.5)  # started 1.5 s ago, busy since
    assert reg.look()[1] == pytest.approx(0.0)
    reg.leave()


@pytest.mark.skipif(sys.platform == "win32" or not os.path.exists("/proc/self/stat"), reason="no flock or /proc")
def test_a_registered_process_s_nice_value_and_group_are_read_from_the_kernel(tmp_path, peer):
    peer(nice=7)
    reg = share.Registry(tmp_path / "registry")
    reg.join(0)
    (them,) = reg.look()[0]
    mine = kernel.sched_of(os.getpid())
    assert them.sched.nice == 7 and mine.nice == kernel.own_nice()
    assert them.sched.group == mine.group and not mine.group.startswith("?")  # same session, same group
    peer(session=True)  # a session of its own: another autogroup where the kernel has them on
    if kernel.autogroups():
        assert len({p.sched.group for p in reg.look()[0]}) == 2
    reg.leave()


def test_registry_sees_live_processes_and_forgets_a_killed_one(tmp_path, peer):
    p = peer(threads=1)
    reg = share.Registry(tmp_path / "registry")
    reg.join(0)
    assert [q.threads for q in reg.others()] == [1]
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert reg.others() == []  # its lock went with it
    assert [f.name for f in (tmp_path / "registry").iterdir()] == [reg.me.name]  # and its file is gone
    reg.leave()
    assert list((tmp_path / "registry").iterdir()) == []


def test_an_idle_registered_process_leaves_its_cores(tmp_path, peer, monkeypatch):
    peer()
    reg = share.Registry(tmp_path / "registry")
    assert len(reg.others()) == 1  # first look: counted
    monkeypatch.setattr(share.time, "monotonic", lambda: 1e9)  # the next look, much later: it used no CPU since
    assert reg.others() == []


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """This process's registry in tmp_path/registry, on a machine of 4 cores, looking again at every forward."""
    reg = share.Registry(tmp_path / "registry")
    monkeypatch.setattr(share, "_REGISTRY", reg)
    monkeypatch.setattr(share, "cores", lambda: 4)
    monkeypatch.setattr(share, "RECHECK_S", 0.0)
    monkeypatch.setattr(share, "machine_busy_seconds", lambda niced_only=False: None)  # whatever else this machine runs now
    monkeypatch.delenv(share.ENV_OFF, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    yield reg
    process._follow.stop()
    reg.leave()


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_a_sharing_process_follows_the_others_and_a_fixed_count_stays(registry, peer):
    net = torch.nn.Linear(2, 2)
    assert process.set_threads(0) == 4 and torch.get_num_threads() == 4  # alone
    p = peer()
    net(torch.zeros(1, 2))  # the next look (every forward here)
    assert torch.get_num_threads() == 2
    p.kill()
    p.wait()
    net(torch.zeros(1, 2))
    assert torch.get_num_threads() == 4
    peer()
    assert process.set_threads(3) == 3  # --threads 3: fixed, whatever the registry says
    net(torch.zeros(1, 2))
    assert torch.get_num_threads() == 3
    assert [f.read_text() for f in (registry.folder.iterdir()) if f.name == registry.me.name][0].count('"threads": 3')


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_whoever_sets_the_thread_count_by_other_means_takes_over(registry, peer):
    net = torch.nn.Linear(2, 2)
    process.set_threads(0)
    torch.set_num_threads(1)  # a test, a notebook
    peer()
    net(torch.zeros(1, 2))
    assert torch.get_num_threads() == 1


def test_no_share_keeps_the_old_behaviour(registry, peer, monkeypatch):
    monkeypatch.setenv(share.ENV_OFF, "1")
    peer()
    assert process.set_threads(0) == 4  # one per core, as before
    assert registry.me is None  # and not registered
