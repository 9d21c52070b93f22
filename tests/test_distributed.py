"""Devices, precision and data-parallel training (torchrun + gloo on the CPU; CUDA tests run where there is a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mnist_vae.errors import ConfigError
from mnist_vae.runtime.device import resolve_device
from mnist_vae.runtime.distributed import DistInfo, shard
from mnist_vae.training import train

from _dist_helpers import QUIET, TORCHRUN, child_env, free_port, tiny_run_config
from helpers import write_npz

WORKER = str(Path(__file__).with_name("_ddp_worker.py"))
has_cuda = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="module")
def single_run(tiny, tmp_path_factory) -> Path:
    """One process, batch 100, 2 epochs: the reference the data-parallel runs must reproduce."""
    out = tmp_path_factory.mktemp("single") / "run"
    train(tiny_run_config(tiny, 2, 100), out, **QUIET)
    return out


def weights(run: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"E{epoch:04d}-S00000" / "model.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def run_ok(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


# --- pure pieces -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,world", [(100, 2), (7, 3), (2, 4), (1, 1)])
def test_shards_cover_the_global_batch_once_in_order(n, world):
    pieces = [range(n)[shard(n, DistInfo(rank=r, world=world))] for r in range(world)]
    assert [i for p in pieces for i in p] == list(range(n))
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


def test_fp16_on_cpu_is_a_config_error(tiny, tmp_path):
    with pytest.raises(ConfigError, match="fp16"):
        train(tiny_run_config(tiny, 1, 100, precision="fp16", device="cpu"), tmp_path / "r", **QUIET)
    assert not (tmp_path / "r").exists()  # refused before touching the run folder


@pytest.mark.skipif(has_cuda, reason="this machine has CUDA")
def test_cuda_request_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "mps")


def test_bf16_autocast_trains_on_cpu(tiny, tmp_path, single_run):
    m = train(tiny_run_config(tiny, 1, 100, precision="bf16"), tmp_path / "bf16", **QUIET)
    ref = json.loads((single_run / "metrics.jsonl").read_text().splitlines()[0])
    assert m["test_loss"] == pytest.approx(ref["test_loss"], rel=0.02)  # bf16 rounding, same training
    assert m["test_loss"] != ref["test_loss"]  # ...but autocast really was on


# --- data-parallel on the CPU (gloo) ---------------------------------------------------------------


@pytest.mark.distributed
def test_two_gloo_processes_match_one_process_with_the_global_batch(tiny, single_run, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    run_ok([*TORCHRUN, "--standalone", "--nproc_per_node=2", WORKER, str(tiny), str(out), "50"])
    rank0, rank1 = (torch.load(out / f"plain-rank{r}.pt") for r in (0, 1))
    # DDP kept the replicas bitwise identical...
    assert max_diff(rank0, rank1) == 0.0
    # ...rank 0's checkpoint is what it had in memory...
    assert max_diff(weights(out / "plain", 2), rank0) == 0.0
    # ...and 2 x 50 per step is 1 x 100 per step, up to float summation order.
    assert max_diff(weights(out / "plain", 2), weights(single_run, 2)) < 1e-5
    mine = [json.loads(line) for line in (out / "plain" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (single_run / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(mine, ref, strict=True):
        for key in ("train_loss", "train_recon", "train_kl", "test_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-6), key
    assert json.loads((out / "plain" / "meta.json").read_text())["processes"] == 2
    # Stopped after 3 steps and resumed under DDP: the same weights as the uninterrupted run.
    resumed0, resumed1 = (torch.load(out / f"resumed-rank{r}.pt") for r in (0, 1))
    assert max_diff(resumed0, resumed1) == 0.0
    assert max_diff(resumed0, rank0) == 0.0


@pytest.mark.slow
@pytest.mark.distributed
def test_nproc_flag_starts_the_same_training_through_the_elastic_launcher(tiny, single_run, tmp_path):
    out = tmp_path / "nproc"
    p = run_ok(
        [
            sys.executable,
            "-m",
            "mnist_vae",
            "train",
            "--nproc",
            "2",
            "--config",
            "optimized",
            "--epochs",
            "1",
            "--batch-size",
            "50",
            "--threads",
            "1",
            "--data-path",
            str(tiny),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert p.stdout.count("done:") == 1  # rank 0 alone reports
    assert json.loads((out / "meta.json").read_text())["processes"] == 2
    assert max_diff(weights(out, 1), weights(single_run, 1)) < 1e-5


@pytest.mark.slow
@pytest.mark.distributed
def test_two_machines_on_localhost(tiny, single_run, tmp_path):
    """Two torchrun invocations, one per "machine" (--nnodes 2), meeting at 127.0.0.1:PORT."""
    out = tmp_path / "multi"
    port = free_port()
    procs = []
    for node in (0, 1):
        cmd = [
            *TORCHRUN,
            "--nnodes=2",
            "--nproc_per_node=1",
            f"--node_rank={node}",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            "-m",
            "mnist_vae",
            "train",
            "--config",
            "optimized",
            "--epochs",
            "1",
            "--batch-size",
            "50",
            "--threads",
            "1",
            "--data-path",
            str(tiny),
            "--out",
            str(out),
            "--no-progress",
        ]
        procs.append(subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=180) for p in procs]
    for p, (o, e) in zip(procs, results):
        assert p.returncode == 0, f"{o[-2000:]}\n{e[-2000:]}"
    assert json.loads((out / "meta.json").read_text())["processes"] == 2
    assert max_diff(weights(out, 1), weights(single_run, 1)) < 1e-5


# --- CUDA: the same small trainings, where a GPU exists ---------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda, reason="no CUDA device on this machine")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda(tiny, single_run, tmp_path, precision):
    cfg = tiny_run_config(tiny, 2, 100, device="cuda", precision=precision)
    m = train(cfg, tmp_path / "cuda", **QUIET)
    ref = json.loads((single_run / "metrics.jsonl").read_text().splitlines()[-1])
    # Not equal: cuDNN's convolutions and the GPU's summation order differ from the CPU's (and cuDNN
    # may use TF32), and two epochs amplify that; measured on an H200 in fp32: 464.3 vs 460.7 (0.8%).
    assert m["test_loss"] == pytest.approx(ref["test_loss"], rel=0.02)
    assert json.loads((tmp_path / "cuda" / "meta.json").read_text())["device"].startswith("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda, reason="no CUDA device on this machine")
def test_cuda_resume_is_exact(tiny, tmp_path):
    from mnist_vae.training import Interrupted

    cfg = tiny_run_config(tiny, 2, 100, device="cuda")
    before = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # cuDNN may otherwise pick non-deterministic kernels
    try:
        train(cfg, tmp_path / "a", **QUIET)
        with pytest.raises(Interrupted):
            train(cfg, tmp_path / "b", stop_after_steps=5, **QUIET)
        train(cfg, tmp_path / "b", resume=True, **QUIET)
    finally:
        torch.backends.cudnn.deterministic = before
    assert max_diff(weights(tmp_path / "a", 2), weights(tmp_path / "b", 2)) == 0.0


def test_auto_device_falls_back_to_the_cpu_when_processes_outnumber_gpus(monkeypatch):
    from mnist_vae.runtime.distributed import auto_device_for_processes

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun --nproc_per_node 2 on a one-GPU machine
    assert auto_device_for_processes(torch.device("cuda")).type == "cpu"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert auto_device_for_processes(torch.device("cuda")).type == "cuda"
    assert auto_device_for_processes(torch.device("cpu")).type == "cpu"


def test_fp16_grad_scaler_starts_low_enough_not_to_skip_the_first_steps(tiny, tmp_path):
    from mnist_vae.data import prepare_data
    from mnist_vae.models import VAE
    from mnist_vae.training.resolved import ResolvedRun
    from mnist_vae.training.trainer import Trainer

    cfg = tiny_run_config(tiny, 1, 100, precision="fp16", device="cpu")  # the scaler is the same object on any device
    run = ResolvedRun(cfg, torch.device("cpu"), tmp_path, DistInfo())
    trainer = Trainer(run, VAE(cfg.model), prepare_data(cfg, torch.device("cpu")), [])
    # A loss of ~500 nats times the default 65536 overflows fp16 gradients (max 65504) for ~10 steps.
    assert trainer.scaler is not None and trainer.scaler.get_scale() == 2.0**10


def test_a_process_killed_by_a_signal_gets_one_line_with_the_way_back():
    from mnist_vae.cli.launch import killed_message

    line = killed_message(1, 2, 4321, 6, ["train", "--config", "optimized", "--out", "runs/ddp"])
    assert "\n" not in line
    assert "process 1 of 2 (pid 4321) died of SIGABRT" in line
    assert "mnist-vae train --resume runs/ddp --nproc 2" in line
    killed = killed_message(0, 2, 1, 9, ["train", "--out=x"])
    assert "died of SIGKILL" in killed and "--resume x " in killed
    assert "RUN: the run folder named above" in killed_message(0, 4, 1, 11, ["train"])
