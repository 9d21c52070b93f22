"""Faults other than kills: NaN loss, damaged checkpoints, a full disk and a read-only folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import mnist_vae.training.step as step_mod
from mnist_vae.errors import TrainingDiverged
from mnist_vae.losses import elbo_terms
from mnist_vae.runs.checkpoint import list_checkpoints, load_checkpoint, verify_checkpoint
from mnist_vae.training import train

from _runs import SRC, assert_bitwise_equal, final_weights, good_checkpoints, leftovers, loss_history, run_in_process, train_args
from helpers import captured_log, small_dataset, tiny_config, write_npz


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "small.npz")


def quiet_train(*args, **kwargs):
    threads = torch.get_num_threads()
    try:
        with captured_log() as log:
            return train(*args, progress=False, figures=False, **kwargs), log
    finally:
        torch.set_num_threads(threads)


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


# --- numerical faults ---------------------------------------------------------------------------


def test_nan_loss_stops_with_epoch_batch_and_keeps_last_good_checkpoint(npz, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned(logits, x, mu, logvar, beta=1.0, free_bits=0.0):
        calls["n"] += 1
        loss, recon, kl = elbo_terms(logits, x, mu, logvar, beta=beta, free_bits=free_bits)
        if calls["n"] == 4 + 3:  # epoch 2, batch 3
            loss = loss * float("nan")
        return loss, recon, kl

    monkeypatch.setattr(step_mod, "elbo_terms", poisoned)  # the one training step's loss
    run = tmp_path / "run"
    result = run_in_process(train_args(npz, run))
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "loss became nan at epoch 2, batch 3" in line and "lower learning rate" in line and "E0001-S00000" in line
    assert [p.name for p in list_checkpoints(run)] == ["E0001-S00000"]  # nothing written after the NaN
    ckpt = load_checkpoint(run / "checkpoints" / "E0001-S00000")
    assert all(torch.isfinite(w).all() for w in ckpt.weights.values())
    assert len(loss_history(run)) == 1 and leftovers(run) == []


def test_real_divergence_with_huge_learning_rate_is_reported(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, batch \d+; no checkpoint had been written yet; try a lower learning rate"):
        quiet_train(tiny_config(2).override(["lr=1e30"]), tmp_path / "run", dataset=small_dataset())


def test_a_process_without_callbacks_says_its_checkpoints_are_kept(tmp_path, monkeypatch):
    # Another rank of a data-parallel run has no callbacks: the loop itself reads no file, rank 0 names the checkpoint.
    import mnist_vae.training.run as run_mod

    monkeypatch.setattr(run_mod, "_callbacks", lambda *a, **k: [])
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, batch \d+; its checkpoints are kept; try a lower learning rate"):
        quiet_train(tiny_config(2).override(["lr=1e30"]), tmp_path / "run", dataset=small_dataset())


# --- damaged newest checkpoint ------------------------------------------------------------------


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "flipped byte in model.safetensors": (lambda c: _flip(c / "model.safetensors"), "model.safetensors fails its checksum"),
    "truncated trainer.pt": (lambda c: _truncate(c / "trainer.pt"), "trainer.pt fails its checksum"),
    "manifest deleted": (lambda c: (c / "manifest.json").unlink(), "manifest.json is missing"),
    "manifest garbage": (lambda c: (c / "manifest.json").write_text("{not json"), "manifest.json is unreadable"),
    "weights deleted": (lambda c: (c / "model.safetensors").unlink(), "model.safetensors is missing"),
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-epoch run (checkpoints E1 and E2), untouched, to copy and damage."""
    run = tmp_path_factory.mktemp("finished") / "run"
    quiet_train(tiny_config(2), run, dataset=small_dataset())
    return run


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_falls_back_to_previous_and_resume_is_exact(damage, finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    newest = run / "checkpoints" / "E0002-S00000"
    hurt, reason = DAMAGES[damage]
    hurt(newest)
    _, log = quiet_train(tiny_config(2), run, resume=True, dataset=small_dataset())
    warning = next(m for m in log if m.startswith("warning:"))
    assert str(newest) in warning and reason in warning and "falling back to the previous one" in warning
    assert any("from E0001-S00000" in m for m in log)
    # Epoch 2 was trained again from E1 and came out exactly as before.
    assert_bitwise_equal(final_weights(run), final_weights(finished))
    assert loss_history(run) == loss_history(finished) and leftovers(run) == []


def test_both_checkpoints_damaged_restarts_from_scratch_exactly(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for c in list_checkpoints(run):
        _flip(c / "trainer.pt")
    _, log = quiet_train(tiny_config(2), run, resume=True, dataset=small_dataset())
    assert sum(m.startswith("warning: skipping damaged checkpoint") for m in log) == 2
    assert any("no checkpoint yet, starting from the beginning" in m for m in log)
    assert_bitwise_equal(final_weights(run), final_weights(finished))


# --- disk full / read-only, simulated in-process ----------------------------------------------


def _enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_checkpoint_keeps_previous_and_leaves_no_partial(npz, tmp_path, monkeypatch):
    real_fsync = os.fsync
    state = {"tmp_dirs": set()}

    def fsync(fd):  # the disk fills while the second checkpoint's weights are flushed
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.name == "model.safetensors" and path.parent.name.startswith(".tmp-"):
            state["tmp_dirs"].add(path.parent)
            if len(state["tmp_dirs"]) == 2:
                _enospc()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "run"
    result = run_in_process(train_args(npz, run))
    monkeypatch.undo()
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: cannot write {run}/checkpoints/E0002-S00000: No space left on device"
    assert [p.name for p in good_checkpoints(run)] == [p.name for p in list_checkpoints(run)] == ["E0001-S00000"]
    assert len(loss_history(run)) == 1 and leftovers(run) == []


def test_disk_full_writing_metrics_keeps_old_file_and_no_temporary(npz, tmp_path, monkeypatch):
    real_replace = os.replace
    seen = {"n": 0}

    def replace(src, dst, *a, **k):
        if Path(dst).name == "metrics.jsonl":
            seen["n"] += 1
            if seen["n"] == 2:
                _enospc()
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)
    run = tmp_path / "run"
    result = run_in_process(train_args(npz, run))
    monkeypatch.undo()
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: cannot write {run}/metrics.jsonl: No space left on device"
    assert len(loss_history(run)) == 1 and leftovers(run) == []
    assert verify_checkpoint(run / "checkpoints" / "E0002-S00000") is None  # the checkpoint was complete before


def test_disk_full_writing_a_figure_leaves_no_partial_png(npz, tmp_path, monkeypatch):
    real_savefig = Figure.savefig

    def savefig(self, fname, *a, **k):
        if "samples" in Path(fname).name:
            Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n half")  # a partial file, then the disk is full
            _enospc()
        return real_savefig(self, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    run = tmp_path / "run"
    result = run_in_process(train_args(npz, run))
    monkeypatch.undo()
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: cannot write {run}/samples.png: No space left on device"
    assert not (run / "samples.png").exists() and leftovers(run) == []
    assert len(loss_history(run)) == 3 and [p.name for p in good_checkpoints(run)][-1] == "E0003-S00000"


# --- a real full disk and a real read-only folder (tmpfs in a private mount namespace) ---------

CHECK = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from _runs import good_checkpoints, leftovers, list_checkpoints, loss_history
run = Path(sys.argv[1])
print("CHECK " + json.dumps({"exists": run.exists(), "files": sorted(str(p.relative_to(run)) for p in run.rglob("*")) if run.exists() else [],
      "good": [p.name for p in good_checkpoints(run)] if run.exists() else [], "all": [p.name for p in list_checkpoints(run)] if run.exists() else [],
      "metrics": len(loss_history(run)) if (run / "metrics.jsonl").exists() else None, "leftovers": leftovers(run) if run.exists() else []}))
"""


def _in_tmpfs(tmp_path: Path, mount_opts: str, script: str) -> tuple[str, dict]:
    """Run ``script`` (sh, $M = the mount point) in a private mount namespace over a fresh tmpfs."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs util-linux unshare")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs {tmp_path}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root or user namespaces)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "check.py").write_text(CHECK)
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "OMP_NUM_THREADS": "1",
        "M": str(mnt),
        "PY": sys.executable,
        "CHECK": str(tmp_path / "check.py"),
        "TESTS": str(Path(__file__).parent),
    }
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", f'mount -t tmpfs -o {mount_opts} tmpfs "$M" && {script}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    checks = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHECK ")]
    assert checks, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr, json.loads(checks[-1][6:])


@pytest.mark.slow
def test_real_full_disk(npz, tmp_path):
    # 9 MiB hold the first checkpoint (about 6.5 MiB: weights + Adam state) but not the second.
    train = " ".join(train_args(npz, Path("$M/run")))
    out, check = _in_tmpfs(tmp_path, "size=9m", f'"$PY" -m mnist_vae {train}; echo "RC $?"; "$PY" "$CHECK" "$M/run" "$TESTS"')
    assert "RC 2" in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in out, out
    assert check["good"] == check["all"] and check["good"], check  # every checkpoint there is complete
    assert check["leftovers"] == [], check
    assert check["metrics"] is None or check["metrics"] == int(check["good"][-1][1:5]), check


def test_real_read_only_output_folder(npz, tmp_path):
    train = " ".join(train_args(npz, Path("$M/run")))
    out, check = _in_tmpfs(tmp_path, "ro", f'"$PY" -m mnist_vae {train}; echo "RC $?"; "$PY" "$CHECK" "$M/run" "$TESTS"')
    assert "RC 2" in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: cannot write {tmp_path}/mnt/run: Read-only file system"], out
    assert not check["exists"]
