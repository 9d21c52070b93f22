"""The runtime layer: progress displays that suit the output, the package's log lines, and the CPU shared between processes."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys

import pytest
import torch

from mnist_vae.runtime import logging as runlog
from mnist_vae.runtime import process, share

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
    "import sys, time; from pathlib import Path; from mnist_vae.runtime import share; "
    "share.Registry(Path(sys.argv[1])).join(int(sys.argv[2])); print('joined', flush=True); time.sleep(120)"
)


@pytest.fixture
def peer(tmp_path):
    """Start processes that register in tmp_path/registry (``threads`` 0 = they share) and idle; killed at the end."""
    procs = []

    def start(threads: int = 0) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, "-c", PEER, str(tmp_path / "registry"), str(threads)],
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


def test_load_from_outside_the_registry_is_what_the_machine_did_less_this_process(tmp_path, monkeypatch):
    clock, machine, mine = [100.0], [0.0], [0.0]
    monkeypatch.setattr(share.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(share, "machine_busy_seconds", lambda: machine[0])
    monkeypatch.setattr(share, "_cpu_seconds", lambda pid: mine[0] if pid == os.getpid() else None)
    reg = share.Registry(tmp_path / "registry")
    reg.join(0)
    assert reg.look() == ([], 0.0)  # a first look knows no rates
    clock[0], machine[0], mine[0] = 102.0, 4.0, 2.0  # 2 s: both cores busy, this process one of them
    assert reg.look() == ([], 1.0)
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
    monkeypatch.setattr(share, "machine_busy_seconds", lambda: None)  # whatever else this machine runs now
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
