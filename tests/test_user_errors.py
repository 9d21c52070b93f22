"""Errors a user can act on: a missing optional extra names the ``pip install`` that brings it; offline ``--dataset mnist``
says where the files go by hand and points to ``--dataset embedded``. One line each, exit code 2, nothing written."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from mnist_vae import data
from mnist_vae.cli import main as cli_main
from mnist_vae.errors import DataError

RUN = Path(__file__).with_name("fixtures") / "run-v0"


def _without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import m`` fail for each module, as when its extra is not installed."""
    for name in list(sys.modules):
        if name in modules or name.startswith(tuple(m + "." for m in modules)):
            monkeypatch.delitem(sys.modules, name)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_export_without_the_onnx_extra_names_it(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    _without(monkeypatch, "onnx")
    assert cli_main(["export", str(run)]) == 2
    assert _one_error_line(capsys) == "error: export needs the onnx extra: pip install 'mnist-vae[onnx]'"
    assert not (run / "onnx").exists()


def test_serve_without_the_web_extra_names_it(monkeypatch, capsys):
    _without(monkeypatch, "fastapi", "uvicorn")
    assert cli_main(["serve", "--pretrained", "lstm-plus"]) == 2
    assert _one_error_line(capsys) == "error: serve needs the web extra: pip install 'mnist-vae[web]'"


def test_tensorboard_without_the_extra_names_it(tmp_path, monkeypatch, capsys):
    _without(monkeypatch, "tensorboard", "torch.utils.tensorboard")
    out = tmp_path / "run"
    args = ["train", "--config", "mlp-vae", "--dataset", "embedded", "--epochs", "1", "--tensorboard", "--out", str(out)]
    assert cli_main(args) == 2
    assert "pip install 'mnist-vae[tensorboard]'" in _one_error_line(capsys)
    assert not out.exists()


def test_offline_mnist_says_where_the_files_go_and_how_to_train_offline(tmp_path):
    cache = tmp_path / "cache" / "mnist"
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", cache_dir=cache, mirrors=["http://127.0.0.1:1/"])  # port 1: nothing listens
    text = str(err.value)
    assert "\n" not in text
    assert (
        f"put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz in {cache}"
        in text
    )
    assert "--data-path DIR" in text and "--dataset embedded" in text
