"""The side-by-side benchmark runs the real product alone and two at once, and prints its table (no timing asserted)."""

import json

import pytest

from mnist_vae.bench import main
from mnist_vae.bench.side_by_side import variant_env

from helpers import write_npz


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
    args = ["--side-by-side", "--pair-config", "mlp-vae", "--epochs", "2", "--pair-data-path", str(npz)]
    args += ["--pair-variants", "shared,before", "--pair-eval-k", "2", "--pair-eval-samples", "2", "--out", str(out)]
    args += ["--pair-scenarios", "train+train,train+evaluate", "--pair-wait-idle", "0", "--pair-retries", "0"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| variant | what ran | img/s per process | machine total | vs alone |" in text
    for row in ("train alone", "train + train", "train + evaluate"):
        assert text.count(f"| {row} |") == 2, row
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"shared", "before"}
    assert all(x > 0 for x in summary["shared"]["train+train"]["per_process"])
