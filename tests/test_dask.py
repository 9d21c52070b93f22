"""Studies on a Dask cluster: a real scheduler and two workers on 127.0.0.1, one of them killed mid-run.

The study must finish with every row, the killed run must resume from its checkpoint and end with
bitwise the weights of an uninterrupted run, and the rows must equal a local study's.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mnist_vae
from mnist_vae.config import EvalConfig
from mnist_vae.data import load_dataset
from mnist_vae.errors import ConfigError
from mnist_vae.evaluation.classifier import Classifier, DigitCNN, cache_path, save_classifier
from mnist_vae.study.dask_executor import DaskExecutor
from mnist_vae.study.executors import make_executor
from mnist_vae.study.runner import run_study
from mnist_vae.study.settings import StudySettings

from helpers import captured_log, write_npz

SRC = Path(mnist_vae.__file__).resolve().parent.parent
EPOCHS = 3
SETTINGS = EvalConfig(k=4, n_samples=100, chunk=600, probe_steps=20)
#: Fields of a row that depend on the weights and the data only (not on timings, memory or the machine).
SAME = ("epochs", "parameters", "elbo", "recon", "kl", "recon_mu", "nll", "nll_stderr", "active_units", "probe_accuracy")
SAME += ("recon_accuracy", "coverage", "histogram", "entropy", "blank_rate", "frechet", "test_loss_history", "train_loss_history")


def test_missing_dask_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"^--executor dask needs the dask and distributed packages.*pip install 'mnist-vae\[dask\]'$"):
        make_executor("dask", 1, "tcp://127.0.0.1:8786")


def test_no_scheduler_is_one_line():
    dask = pytest.importorskip("dask", reason="dask is not installed (pip install 'mnist-vae[dask]')")
    pytest.importorskip("distributed", reason="distributed is not installed (pip install 'mnist-vae[dask]')")
    with dask.config.set({"scheduler-address": None}), pytest.raises(ConfigError, match="needs --scheduler tcp://HOST:8786"):
        DaskExecutor(None)
    with pytest.raises(ConfigError, match=r"^--scheduler tcp://127.0.0.1:1: no Dask scheduler answers there \(.*\); start one"):
        with DaskExecutor("tcp://127.0.0.1:1", timeout=1):
            pass
    with pytest.raises(ConfigError, match=r"^--scheduler nonsense: not a Dask scheduler's address \(missing port number"):
        with DaskExecutor("nonsense"):
            pass


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as f:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the session this test started: the CLI process and its nanny's worker
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two one-thread workers (with nannies), separate processes on 127.0.0.1; yields (client, worker logs)."""
    pytest.importorskip("dask", reason="dask is not installed (pip install 'mnist-vae[dask]')")
    distributed = pytest.importorskip("distributed", reason="distributed is not installed (pip install 'mnist-vae[dask]')")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MNIST_VAE_DATA": str(tmp_path / "cache"),
    }
    file = tmp_path / "scheduler.json"
    scheduler_args = [
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--no-dashboard",
        "--scheduler-file",
        str(file),
    ]
    # No second chance from the scheduler: a worker's death fails its task at once (KilledWorker), so the
    # executor's own resubmission is what the test sees working (Dask's default is 3 chances).
    procs = [_start(scheduler_args, tmp_path / "scheduler.log", {**env, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"})]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for i, log in enumerate(logs):
            worker = ["distributed.cli.dask_worker", "--scheduler-file", str(file), "--host", "127.0.0.1", "--nthreads", "1"]
            worker += ["--nworkers", "1", "--no-dashboard", "--memory-limit", "0", "--local-directory", str(tmp_path / f"w{i}")]
            procs.append(_start(worker, log, env))
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
            yield client, logs
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _kill_mid_run(client, runs: list[Path], seen: dict) -> None:
    """SIGKILL the worker running the first run that has its epoch-1 checkpoint but is not trained yet."""
    pids = client.run(os.getpid)  # worker address -> its process
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not seen:
        for run in runs:
            ckpts = run / "checkpoints"
            if (ckpts / "E0001-S00000").is_dir() and not (ckpts / f"E{EPOCHS:04d}-S00000").exists():
                key = f"-{run.parent.name}-{run.name}-"  # the task's key names config and seed
                address = next(a for a, keys in client.processing().items() if any(key in str(k) for k in keys))
                os.kill(pids[address], signal.SIGKILL)
                time.sleep(0.5)  # let the process die before looking at what it left
                seen.update(run=run, pid=pids[address], newest=max(p.name for p in ckpts.iterdir() if p.name.startswith("E")))
                return
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.distributed
def test_study_on_two_dask_workers_survives_a_killed_worker(cluster, tmp_path, monkeypatch, request):
    client, worker_logs = cluster
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))  # the local study sets 1
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))  # the cache the workers read
    npz = write_npz(tmp_path / "digits.npz", n_train=500, n_test=100)
    ds = load_dataset("auto", str(npz))
    torch.manual_seed(0)  # an untrained judge: the sample-quality numbers only have to be the same everywhere
    save_classifier(Classifier(DigitCNN().eval(), 0.5, 1.0, ds.sha256), cache_path(ds))
    settings = StudySettings(configs=("baseline",), seeds=2, epochs=EPOCHS, eval=SETTINGS, dataset="auto", data_path=str(npz), threads=1)
    out = tmp_path / "dask-study"
    runs = [out / "runs" / "baseline" / f"seed{s}" for s in (0, 1)]
    seen: dict = {}
    killer = threading.Thread(target=_kill_mid_run, args=(client, runs, seen), daemon=True)
    killer.start()
    with captured_log() as parent_log:
        result = run_study(settings.replace(out=out, executor="dask", scheduler=client.scheduler.address))
    killer.join(timeout=5)

    assert seen, "no worker was killed mid-run"
    assert [(r["config"], r["seed"]) for r in result["rows"]] == [("baseline", 0), ("baseline", 1)]
    study = json.loads((out / "study.json").read_text())
    assert study["meta"]["executor"] == "dask" and len(study["rows"]) == 2
    assert "| baseline |" in (out / "report.md").read_text()
    killed = seen["run"]
    assert any(f"[baseline seed {killed.name[4:]}] Dask gave it up after its workers died; submitted again" in m for m in parent_log)
    logs = "".join(p.read_text(errors="replace") for p in worker_logs)
    assert f"[baseline seed {killed.name[4:]}] resuming {killed} from {seen['newest']}" in logs
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == EPOCHS  # no epoch twice

    # The same jobs as local processes: the same rows, and bitwise the same final weights.
    local = run_study(settings.replace(out=tmp_path / "local-study"))
    for d, lo in zip(result["rows"], local["rows"]):
        assert {k: d[k] for k in SAME} == {k: lo[k] for k in SAME}
        assert Path(d["run"]).relative_to(out) == Path(lo["run"]).relative_to(tmp_path / "local-study")
    final = f"checkpoints/E{EPOCHS:04d}-S00000/model.safetensors"
    for run in runs:
        a, b = load_file(run / final), load_file(tmp_path / "local-study" / run.relative_to(out) / final)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
