"""``mnist-vae serve`` on damaged checkpoints: the same warning as the other commands, and one-line errors."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")

from mnist_vae.cli import main

from _serve_helpers import shared_run, small_dataset


@pytest.fixture(scope="module")
def run16(tmp_path_factory):
    return shared_run(tmp_path_factory, small_dataset(), latent_dim=16)


@pytest.fixture
def no_serving(monkeypatch):
    """``serve`` goes as far as serving, then returns; the app it would have served is kept."""
    served: dict = {}

    class Server:
        def run(self, sockets) -> None:
            for sock in sockets:
                sock.close()

    def make_server(app, log_level="warning"):
        served["app"] = app
        real_make_server(app, log_level)  # uvicorn's Config configures logging: it must leave ours alone
        return Server()

    from mnist_vae.serve.app import make_server as real_make_server

    monkeypatch.setattr("mnist_vae.serve.app.make_server", make_server)
    threads = torch.get_num_threads()
    yield served
    torch.set_num_threads(threads)  # serve() runs the model on one thread; the other tests should not


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_cli_warns_like_sample_and_serves_the_previous_checkpoint_when_the_newest_is_truncated(tmp_path, run16, capsys, no_serving):
    run = tmp_path / "run"
    shutil.copytree(run16, run)
    (first,) = sorted((run / "checkpoints").iterdir())
    newest = first.parent / "E0009-S00000"
    shutil.copytree(first, newest)
    _truncate(newest / "model.safetensors")

    assert main(["sample", str(run), "--n", "4"]) == 0
    sample = capsys.readouterr()
    assert main(["serve", str(run), "--port", "0"]) == 0
    serve = capsys.readouterr()
    warned = [line for line in (serve.out + serve.err).splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and str(newest) in warned[0] and "model.safetensors fails its checksum" in warned[0]
    assert warned == [line for line in (sample.out + sample.err).splitlines() if line.startswith("warning:")]
    assert f"serving {run} at http://127.0.0.1:" in serve.out
    assert no_serving["app"].state.explorer.run.epoch == 1  # E0001, the good one
    # Once uvicorn has configured its logging, the package's warnings still reach the user.
    logging.getLogger("mnist_vae.runs.checkpoint").warning("still heard")
    late = capsys.readouterr()
    assert "warning: still heard" in late.out + late.err


def test_cli_names_the_file_and_the_fault_when_the_only_checkpoint_is_truncated(tmp_path, run16, capsys, no_serving):
    run = tmp_path / "run"
    shutil.copytree(run16, run)
    (only,) = sorted((run / "checkpoints").iterdir())
    _truncate(only / "model.safetensors")
    assert main(["serve", str(run), "--port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert errors == [err[-1]], err
    assert str(only) in errors[0] and "model.safetensors fails its checksum" in errors[0]
    assert "app" not in no_serving
