"""Kill training at any moment, resume, and get bitwise the weights of an uninterrupted run.

Each case runs ``python -m mnist_vae train`` (through tests/_faultrun.py) in a subprocess that
SIGKILLs itself at a chosen point -- during a step, inside a checkpoint write, while writing
metrics or the end-of-run figures -- or receives SIGINT/SIGTERM. Then ``--resume`` finishes the
run and every tensor of the final weights and of Adam's state must equal the uninterrupted
reference run's (``torch.equal``), as must the recorded losses.

The kill points are drawn at random from the catalogue below with a seed (``MNIST_VAE_KILL_SEED``,
default 7) so that a failure can be replayed. The default suite runs 3 kills + SIGINT + SIGTERM;
``-m slow`` adds 8 more plus 2 kills at random wall-clock moments; ``MNIST_VAE_KILL_POINTS=all``
makes the slow test run the whole catalogue. Every case that starts a training subprocess is marked
``distributed``, so ``-m "not distributed"`` keeps only the in-process SIGTERM case.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mnist_vae.cli import build_parser, resolve_config
from mnist_vae.config import load_toml
from mnist_vae.runs.checkpoint import load_checkpoint
from mnist_vae.training import train

from _runs import (
    EPOCHS,
    FIGURES,
    SRC,
    STEPS_PER_EPOCH,
    assert_bitwise_equal,
    final_weights,
    good_checkpoints,
    leftovers,
    loss_history,
    optimizer_tensors,
    run_cli,
    run_in_process,
    train_args,
)
from helpers import write_npz

TOTAL_STEPS = STEPS_PER_EPOCH * EPOCHS
SEED = int(os.environ.get("MNIST_VAE_KILL_SEED", "7"))

# (kind, n) for every distinct kill point of the tiny run (3 epochs x 4 steps, 3 checkpoints,
# the first prune at the third checkpoint, 5 figures).
CATALOGUE = (
    [("step", n) for n in range(1, TOTAL_STEPS + 1)]
    + [(k, n) for k in ("ckpt-model", "ckpt-trainer", "ckpt-manifest", "ckpt-renamed", "metrics") for n in range(1, EPOCHS + 1)]
    + [("ckpt-prune", 1)]
    + [("figure", n) for n in range(1, len(FIGURES) + 1)]
)
_rng = random.Random(SEED)
DEFAULT_POINTS = [
    (*_rng.choice([p for p in CATALOGUE if p[0] == "step"]), "none"),
    (*_rng.choice([p for p in CATALOGUE if p[0].startswith("ckpt") or p[0] == "metrics"]), "dynamic"),
    (*_rng.choice([p for p in CATALOGUE if p[0] == "figure"]), "none"),
]
_rest = [p for p in CATALOGUE if p not in [d[:2] for d in DEFAULT_POINTS]]
SLOW_POINTS = (
    [(*p, _rng.choice(["none", "dynamic"])) for p in _rest]
    if os.environ.get("MNIST_VAE_KILL_POINTS") == "all"
    else [(*p, _rng.choice(["none", "dynamic"])) for p in _rng.sample(_rest, 8)]
)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "small.npz")


@pytest.fixture(scope="module")
def reference(npz, tmp_path_factory):
    """Uninterrupted runs (in-process, no figures), one per binarisation mode, made on first use."""
    cache = {}

    def get(binarize: str):
        if binarize not in cache:
            out = tmp_path_factory.mktemp(f"ref-{binarize}") / "run"
            cfg = resolve_config(build_parser().parse_args(train_args(npz, out, binarize)))
            threads = torch.get_num_threads()
            try:
                train(cfg, out, progress=False, figures=False)
            finally:
                torch.set_num_threads(threads)
            cache[binarize] = out
        return cache[binarize]

    return get


def expected_min_epoch(kind: str, n: int) -> int:
    """The newest checkpoint a kill at (kind, n) must leave: at most the current epoch is lost."""
    if kind == "step":
        return (n - 1) // STEPS_PER_EPOCH  # the start of the epoch the step belongs to
    if kind in ("ckpt-model", "ckpt-trainer", "ckpt-manifest", "metrics"):
        return n - 1 if kind != "metrics" else n  # writing checkpoint n: checkpoint n-1 must be intact
    if kind == "ckpt-renamed":
        return n
    if kind == "ckpt-prune":
        return EPOCHS  # the first prune runs right after the last checkpoint
    return EPOCHS  # figures come after training


def check_resumed(run, ref, resumed: subprocess.CompletedProcess, context: str) -> None:
    assert resumed.returncode == 0, f"{context}: resume failed:\n{resumed.stderr[-2000:]}"
    assert load_toml(run / "config.toml") == load_toml(ref / "config.toml"), f"{context}: not the reference config"
    assert_bitwise_equal(final_weights(run), final_weights(ref), f"{context}: final weights")
    assert_bitwise_equal(optimizer_tensors(run), optimizer_tensors(ref), f"{context}: Adam state")
    assert loss_history(run) == loss_history(ref), f"{context}: metrics.jsonl differs"
    assert good_checkpoints(run)[-1].name == f"E{EPOCHS:04d}-S00000"
    assert len(good_checkpoints(run)) == 2, f"{context}: expected the 2 newest checkpoints kept"
    assert all((run / f).stat().st_size > 0 for f in FIGURES), f"{context}: figures missing"
    assert leftovers(run) == [], f"{context}: temporaries left after resume: {leftovers(run)}"


def kill_and_resume(kind: str, n: int, binarize: str, npz, reference, tmp_path) -> None:
    context = f"kill at {kind}:{n} (binarize {binarize}, MNIST_VAE_KILL_SEED={SEED})"
    run = tmp_path / "run"
    killed = run_cli(train_args(npz, run, binarize), fault=f"{kind}:{n}")
    assert killed.returncode == -signal.SIGKILL, (
        f"{context}: the kill point was not reached (rc {killed.returncode})\n{killed.stderr[-2000:]}"
    )
    good = good_checkpoints(run)
    newest = load_checkpoint(good[-1]).trainer["state"]["epoch"] if good else 0
    assert newest >= expected_min_epoch(kind, n), f"{context}: more than the current epoch lost (newest good: epoch {newest})"
    resumed = run_in_process(["train", "--resume", str(run), "--no-progress"])
    check_resumed(run, reference(binarize), resumed, context)
    if good:
        assert f"from E{newest:04d}-S00000" in resumed.stdout, f"{context}: did not resume from the newest good checkpoint"


@pytest.mark.distributed
@pytest.mark.parametrize("kind,n,binarize", DEFAULT_POINTS, ids=[f"{k}:{n}-{b}" for k, n, b in DEFAULT_POINTS])
def test_sigkill_then_resume_is_bitwise_identical(kind, n, binarize, npz, reference, tmp_path):
    kill_and_resume(kind, n, binarize, npz, reference, tmp_path)


def stop_and_resume(signame: str, code: int, stopped: subprocess.CompletedProcess, step: int, run, reference, binarize) -> None:
    assert stopped.returncode == code, stopped.stderr[-2000:]
    newest = good_checkpoints(run)[-1]
    assert newest.name == f"E0001-S{step - STEPS_PER_EPOCH:05d}", newest.name
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signame.upper()}: saved {newest}") and f"--resume {run}" in last
    resumed = run_in_process(["train", "--resume", str(run), "--no-progress"])
    assert f"from {newest.name} (epoch 1, step {step - STEPS_PER_EPOCH})" in resumed.stdout
    check_resumed(run, reference(binarize), resumed, f"{signame} at step {step}")


# A step in the middle of epoch 2 (never an epoch's last), so the checkpoint has step > 0.
MID_STEP = STEPS_PER_EPOCH + random.Random(SEED).randrange(1, STEPS_PER_EPOCH)


@pytest.mark.distributed
def test_sigint_saves_mid_epoch_checkpoint_exits_130_and_resume_is_bitwise_identical(npz, reference, tmp_path):
    run = tmp_path / "run"
    stopped = run_cli(train_args(npz, run, "dynamic"), fault=f"sigint:{MID_STEP}")  # a real process gets the signal
    stop_and_resume("sigint", 130, stopped, MID_STEP, run, reference, "dynamic")


def test_sigterm_saves_mid_epoch_checkpoint_exits_143_and_resume_is_bitwise_identical(npz, reference, tmp_path, monkeypatch):
    # In-process (the signal goes to this process, caught by train()'s handler): the same code path, faster.
    original_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == MID_STEP:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    run = tmp_path / "run"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stopped = run_in_process(train_args(npz, run, "none"))
    monkeypatch.undo()
    # train() turned SIGINT/SIGTERM into a stop flag only while it ran: the handlers it found are back.
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    stop_and_resume("sigterm", 143, stopped, MID_STEP, run, reference, "none")


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("kind,n,binarize", SLOW_POINTS, ids=[f"{k}:{n}-{b}" for k, n, b in SLOW_POINTS])
def test_sigkill_more_points(kind, n, binarize, npz, reference, tmp_path):
    kill_and_resume(kind, n, binarize, npz, reference, tmp_path)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("attempt", range(2))
def test_sigkill_at_random_moments_twice_then_resume(attempt, npz, reference, tmp_path):
    """An outside ``kill -9`` at random wall-clock moments (twice in a row), then resume."""
    rng = random.Random(SEED * 100 + attempt)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop("MNIST_VAE_TEST_FAULT", None)
    args = train_args(npz, run, rng.choice(["none", "dynamic"]))
    binarize = args[args.index("--binarize") + 1]
    for round_ in range(2):
        cmd = [sys.executable, "-m", "mnist_vae", *(args if round_ == 0 else ["train", "--resume", str(run), "--no-progress"])]
        if round_ == 1 and not (run / "run.json").exists():
            cmd = [sys.executable, "-m", "mnist_vae", *args[:-3], "--out", str(run), "--force", "--no-progress"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait for training to begin (a run folder exists), then a random moment of the ~2 s of work.
        deadline = time.monotonic() + 60
        while not (run / "run.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 2.5))
        proc.kill()
        proc.wait(timeout=30)
    resumed = run_in_process(["train", "--resume", str(run), "--no-progress"])
    check_resumed(run, reference(binarize), resumed, f"random kills (attempt {attempt}, seed {SEED})")


# --- the first seconds: claiming the run folder ------------------------------------------------------


def _finish_after_kill(run, args: list[str]) -> subprocess.CompletedProcess:
    """What a user does after a kill: resume the run if its folder exists, else start it again."""
    if run.exists():
        return run_in_process(["train", "--resume", str(run), "--no-progress"])
    return run_in_process(args)


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["claim-tmp", "claim-renamed"])
def test_kill_while_claiming_the_run_folder_leaves_nothing_or_a_resumable_run(kind, npz, reference, tmp_path):
    run = tmp_path / "run"
    args = train_args(npz, run, "none")
    killed = run_cli(args, fault=f"{kind}:1")
    assert killed.returncode == -signal.SIGKILL, f"kill point {kind} not reached\n{killed.stderr[-2000:]}"
    assert run.exists() == (kind == "claim-renamed")  # before the rename: no folder at all
    if run.exists():
        assert (run / "run.json").exists() and (run / "config.toml").exists() and (run / "meta.json").exists()
    done = _finish_after_kill(run, args)
    check_resumed(run, reference("none"), done, f"kill at {kind}")
    assert not list(tmp_path.glob(".run.tmp-*")), "the killed claim's temporary folder was not cleaned up"


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("attempt", range(4))
def test_sigkill_in_the_first_seconds_leaves_nothing_or_a_resumable_run(attempt, npz, reference, tmp_path):
    """``kill -9`` at a random moment of the first seconds of `train` (start-up, data, claiming the folder)."""
    rng = random.Random(SEED * 1000 + attempt)
    run = tmp_path / "run"
    args = train_args(npz, run, "none")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mnist_vae", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.5, 4.0))
    proc.kill()
    proc.wait(timeout=30)
    assert not run.exists() or (run / "run.json").exists(), "a run folder without run.json was left"
    done = _finish_after_kill(run, args)
    check_resumed(run, reference("none"), done, f"kill in the first seconds (attempt {attempt}, seed {SEED})")
