"""The trained weights that ship with the package: checksums, loading, the test −ELBO they record, serve and configs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mnist_vae
from mnist_vae.api import TrainedVAE
from mnist_vae.cli import main
from mnist_vae.errors import CheckpointError, ConfigError
from mnist_vae.io import sha256_file
from mnist_vae.models import count_parameters
from mnist_vae.runs.pretrained import MANIFEST, measure_test_elbo, open_pretrained, pretrained_dir, read_manifest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("lstm-plus", "mlp-vae", "optimized")
#: The re-measured test −ELBO is deterministic for given weights on the CPU in fp32; what is left is the
#: order of floating-point sums, which may differ with the CPU's vector width and the thread count.
ELBO_TOL = 1e-4


@pytest.fixture(scope="module")
def manifest() -> dict:
    return read_manifest()


def test_the_manifest_lists_the_three_models_and_their_files_match_its_sums(manifest):
    assert sorted(manifest["models"]) == sorted(SHIPPED)
    for name, entry in manifest["models"].items():
        path = pretrained_dir() / entry["file"]
        assert path.name == f"{name}.safetensors"
        assert path.stat().st_size == entry["bytes"]
        assert sha256_file(path) == entry["sha256"], name
        assert entry["epochs"] == 50 and entry["seed"] == 0 and entry["dataset"]["name"] == "embedded"
        assert entry["source_commit"] and f"--config {name} " in entry["command"]
        assert len(entry["history"]) == 50 and entry["history"][-1]["test_loss"] == entry["recorded_test_loss"]


@pytest.mark.parametrize("name", SHIPPED)
def test_each_loads_as_a_trained_vae_and_gives_the_test_elbo_its_manifest_records(name, manifest):
    entry = manifest["models"][name]
    vae = mnist_vae.load_pretrained(name)
    assert isinstance(vae, TrainedVAE) and type(vae) is TrainedVAE
    assert vae.config.name == name and vae.epoch == 50 and len(vae.history) == 50
    assert count_parameters(vae.model) == entry["parameters"]
    assert {str(p.dtype) for p in vae.model.parameters()} == {"torch.float32"}
    measured = measure_test_elbo(vae.model, vae.config, vae.epoch)
    recorded = entry["test_elbo"]
    assert measured["generator_seed"] == recorded["generator_seed"] and measured["n_images"] == recorded["n_images"] == 2000
    assert measured["loss"] == pytest.approx(recorded["loss"], abs=ELBO_TOL)
    assert measured["kl"] == pytest.approx(recorded["kl"], abs=ELBO_TOL)
    # The same protocol as the trainer's last epoch: the run's own metrics.jsonl figure, to the same tolerance.
    assert recorded["loss"] == pytest.approx(entry["recorded_test_loss"], abs=ELBO_TOL)
    images = vae.sample(4, seed=0)
    assert images.shape == (4, 28, 28) and 0 <= float(images.min()) <= float(images.max()) <= 1


def test_an_unknown_name_is_one_line_listing_the_valid_names():
    with pytest.raises(ConfigError) as err:
        mnist_vae.load_pretrained("nosuch")
    msg = str(err.value)
    assert "\n" not in msg and "'nosuch'" in msg and all(n in msg for n in SHIPPED)


def test_a_damaged_file_fails_its_checksum_before_it_is_read(tmp_path):
    shutil.copy(pretrained_dir() / MANIFEST, tmp_path / MANIFEST)
    target = tmp_path / "mlp-vae.safetensors"
    data = bytearray((pretrained_dir() / "mlp-vae.safetensors").read_bytes())
    data[-10] ^= 0xFF  # a weight's byte: the file still parses, only the sum can tell
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"mlp-vae\.safetensors: fails its checksum"):
        open_pretrained("mlp-vae", directory=tmp_path)
    assert open_pretrained("optimized", directory=pretrained_dir()).config.name == "optimized"


def test_configs_marks_the_configurations_with_weights(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for name in SHIPPED:
        assert "pretrained" in lines[name]
    assert "pretrained" not in lines["baseline"]
    assert "pretrained: trained weights ship for lstm-plus (50 epochs on embedded, seed 0)" in out


def test_package_data_ships_them():
    assert '"assets/pretrained/*"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_serve_pretrained_opens_the_explorer_without_a_run_folder(monkeypatch, capsys):
    pytest.importorskip("fastapi", reason="the web extra (fastapi) is not installed")
    pytest.importorskip("uvicorn", reason="the web extra (uvicorn) is not installed")
    from fastapi.testclient import TestClient

    served: dict = {}

    class Server:
        def run(self, sockets) -> None:
            for sock in sockets:
                sock.close()

    monkeypatch.setattr("mnist_vae.serve.app.make_server", lambda app, log_level="warning": served.setdefault("app", app) and Server())
    threads = torch.get_num_threads()
    try:
        assert main(["serve", "--pretrained", "mlp-vae", "--port", "0"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "serving " in capsys.readouterr().out
    client = TestClient(served["app"])
    info = client.get("/api/info").json()
    assert info["name"] == "mlp-vae" and info["epochs"] == 50 and info["n_test"] == 2000 and info["final"]["test_loss"] > 0
    assert client.get("/api/loss_curves.png").status_code == 200
    assert len(client.post("/api/samples", json={"n": 2, "seed": 1}).json()["images"]) == 2


def test_serve_needs_a_run_or_pretrained_but_not_both(capsys):
    assert main(["serve", "--port", "0"]) == 2
    assert main(["serve", "somewhere", "--pretrained", "mlp-vae", "--port", "0"]) == 2
    assert main(["serve", "--pretrained", "nosuch", "--port", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and "one of them, not both" in err[0] and "one of them, not both" in err[1] and "valid names" in err[2]


@pytest.mark.slow
def test_the_build_script_writes_a_manifest_whose_values_load_checks(tmp_path):
    """``scripts/build_pretrained.py --from-runs`` on a one-epoch run: the code path that wrote the shipped manifest."""
    from mnist_vae.presets import get_config
    from mnist_vae.training import train

    train(
        get_config("mlp-vae").replace(epochs=1, threads=1, dataset="embedded", device="cpu"),
        tmp_path / "runs" / "mlp-vae",
        progress=False,
        figures=False,
    )
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, str(ROOT / "scripts" / "build_pretrained.py"), "--from-runs", str(tmp_path / "runs")]
    cmd += ["--names", "mlp-vae", "--source-commit", "test", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entry = json.loads((out / MANIFEST).read_text())["models"]["mlp-vae"]
    assert entry["epochs"] == 1 and entry["sha256"] == sha256_file(out / "mlp-vae.safetensors")
    run = open_pretrained("mlp-vae", directory=out)
    assert measure_test_elbo(run.model, run.config, 1)["loss"] == pytest.approx(entry["test_elbo"]["loss"], abs=ELBO_TOL)
    assert entry["test_elbo"]["loss"] == pytest.approx(entry["recorded_test_loss"], abs=ELBO_TOL)


def test_the_documented_example_runs():
    import re

    blocks = [
        b
        for b in re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(encoding="utf-8"), flags=re.S)
        if "load_pretrained" in b
    ]
    assert blocks
    scope: dict = {}
    exec(blocks[0], scope)
    assert tuple(scope["digits"].shape) == (8, 28, 28) and scope["vae"].config.name == "lstm-plus"
