"""The runtime layer: progress displays that suit the output, and the package's log lines."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest

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
