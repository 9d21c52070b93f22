"""The side-by-side benchmark (experiments/side_by_side.py) runs the real product alone and two at once, and prints its
table (no timing asserted)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import write_npz

# The benchmark is an experiment, not part of the package: its modules import each other as a script's siblings do.
sys.path.append(str(Path(__file__).resolve().parents[1] / "experiments"))
from side_by_side import main
from side_by_side_runs import BUSY_LOOP, SideBySide, variant_env


def test_before_variant_turns_the_cure_off_and_shared_leaves_it_on(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert variant_env("before")["MNIST_VAE_NO_SHARE"] == "1" and "OMP_WAIT_POLICY" not in variant_env("before")
    assert variant_env("passive")["OMP_WAIT_POLICY"] == "PASSIVE"
    shared = variant_env("shared")
    assert "MNIST_VAE_NO_SHARE" not in shared and "OMP_WAIT_POLICY" not in shared


@pytest.mark.slow
def test_side_by_side_runs_and_prints_its_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_SHARE_DIR", str(tmp_path / "registry"))  # not the user's registry
    npz = write_npz(tmp_path / "small.npz", n_train=400, n_test=100)
    out = tmp_path / "sbs.json"
    args = ["--config", "mlp-vae", "--epochs", "2", "--data-path", str(npz)]
    args += ["--variants", "shared,before", "--eval-k", "2", "--eval-samples", "2", "--out", str(out)]
    args += ["--scenarios", "train+train,train+evaluate", "--wait-idle", "0", "--retries", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| variant | what ran | img/s per process | machine total | vs alone |" in text
    for row in ("train alone", "train + train", "train + evaluate"):
        assert text.count(f"| {row} |") == 2, row
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"shared", "before"}
    assert all(x > 0 for x in summary["shared"]["train+train"]["per_process"])


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="no /proc")
def test_the_busy_loop_runs_at_the_lowest_priority():
    loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        for _ in range(100):  # until it has reniced itself
            nice = os.getpriority(os.PRIO_PROCESS, loop.pid)
            if nice == 19:
                break
            time.sleep(0.02)
        assert nice == 19
    finally:
        loop.kill()
        loop.wait()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="no /proc")
def test_side_by_side_beside_a_niced_loop_and_with_a_niced_study(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_SHARE_DIR", str(tmp_path / "registry"))
    started = []
    start = SideBySide._start

    def recording(self, args, metrics, nice=0):
        p = start(self, args, metrics, nice)
        pid = p.popen.pid
        started.append((args[0], os.getpriority(os.PRIO_PROCESS, pid)))  # set before the program began
        assert os.getsid(pid) == os.getsid(0) and os.getpgid(pid) == pid  # this session, a group of its own
        return p

    monkeypatch.setattr(SideBySide, "_start", recording)
    npz = write_npz(tmp_path / "small.npz", n_train=400, n_test=100)
    out = tmp_path / "sbs.json"
    args = ["--config", "mlp-vae", "--epochs", "2", "--data-path", str(npz), "--variants", "shared"]
    args += ["--scenarios", "train+nice-loop,train+nice-loop-elsewhere,nice-study+train", "--rounds", "2", "--wait-idle", "0"]
    assert main([*args, "--retries", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("| shared | train beside a nice-19 busy loop of the same session |") == 1
    assert text.count("| shared | train beside a nice-19 busy loop of another session |") == 1
    assert text.count("| shared | nice-19 study + train |") == 1
    result = json.loads(out.read_text())
    assert len(result["results"]["shared"]["train+nice-loop"]["train_img_s"]) == 2  # alternating with train alone, 2 rounds
    assert len(result["results"]["shared"]["train+nice-loop-elsewhere"]["train_img_s"]) == 2
    assert len(result["results"]["shared"]["train"]["train_img_s"]) == 2
    row = result["summary"]["shared"]["nice-study+train"]
    assert row["train_vs_alone"] > 0 and all(x > 0 for x in row["per_process"])
    assert sorted(set(started)) == [("study", 19), ("train", 0)]
