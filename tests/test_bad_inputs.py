"""Every bad input gets a one-line ``error: ...``, a non-zero exit, and nothing is written."""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mnist_vae.io import sha256_file
from mnist_vae.runs.checkpoint import list_checkpoints
from mnist_vae.training import train

from _idx_helpers import idx_bytes
from _runs import run_in_process, train_args
from helpers import tiny_config, write_npz


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "small.npz")


@pytest.fixture(scope="module")
def finished(npz, tmp_path_factory):
    """A finished 1-epoch run folder (config.toml, checkpoint E1) to copy and spoil."""
    run = tmp_path_factory.mktemp("finished") / "run"
    threads = torch.get_num_threads()
    train(tiny_config(1).override([f"data_path={json.dumps(str(npz))}"]), run, progress=False, figures=False)
    torch.set_num_threads(threads)
    return run


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def refused(args: list[str], *words: str, watch: Path | None = None) -> str:
    """Run the CLI; assert exit 2 with exactly one stderr line ``error: ...`` holding ``words``, and ``watch`` unchanged."""
    before = snapshot(watch) if watch else None
    existed = watch.exists() if watch else None
    result = run_in_process(args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for w in words:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    if watch:
        assert watch.exists() == existed and snapshot(watch) == before, f"{watch} was written to"
    return lines[0]


# --- configuration -----------------------------------------------------------------------------


def test_unknown_configuration_name_lists_valid_ones(tmp_path):
    refused(["train", "--config", "basline", "--out", str(tmp_path / "r")], "'basline'", "baseline, deeper-decoder", watch=tmp_path / "r")


@pytest.mark.parametrize(
    "toml,words",
    [
        ("[model]\nlatnt_dim = 2\n", ["latnt_dim", "unknown key", "latent_dim"]),
        ("[trian]\nlr = 0.1\n", ["trian", "unknown key"]),
        ('[train]\nlr = "fast"\n', ["lr", "'fast'", "not a valid float"]),
        ("[model]\nlatent_dim = 2.5\n", ["latent_dim", "2.5", "int"]),
        ("[model\nlatent_dim = 2\n", ["not valid TOML"]),
    ],
)
def test_bad_config_file(tmp_path, toml, words):
    f = tmp_path / "my.toml"
    f.write_text(toml)
    refused(["train", "--config", str(f), "--out", str(tmp_path / "r")], str(f), *words, watch=tmp_path / "r")


@pytest.mark.parametrize(
    "sets,words",
    [
        (["lr=-0.001"], ["lr", "-0.001", "positive"]),
        (["latent_dim=0"], ["latent_dim", "positive integer", "0"]),
        (["dropout=1.0"], ["dropout", "[0, 1)", "1.0"]),
        (["dropout=1.5"], ["dropout", "1.5"]),
        (["decoder_convs=[[32, 2], [1, 1]]"], ["decoder_options.convs", "reaches 1x14x14", "1x28x28"]),
        (["decoder_options.convs=[[32, 2], [1, 1]]"], ["decoder_options.convs", "reaches 1x14x14"]),
        (["decoder_convs=[[32, 2], [16, 2], [3, 1]]"], ["reaches 3x28x28"]),
        (["lattent_dim=2"], ["lattent_dim", "unknown field"]),
        (["epochs=0"], ["epochs"]),
        (["binarize=sometimes"], ["binarize", "sometimes"]),
    ],
)
def test_values_out_of_range(tmp_path, sets, words):
    args = ["train", "--config", "baseline", "--out", str(tmp_path / "r")] + [a for s in sets for a in ("--set", s)]
    refused(args, *words, watch=tmp_path / "r")


def test_negative_learning_rate_flag(tmp_path):
    refused(["train", "--lr", "-1", "--out", str(tmp_path / "r")], "lr", "positive", watch=tmp_path / "r")


# --- data files ----------------------------------------------------------------------------------


def _bad_npz(tmp_path: Path, npz: Path, kind: str) -> Path:
    out = tmp_path / f"{kind}.npz"
    if kind == "truncated":
        out.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif kind == "foreign":
        out.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    elif kind == "mislabelled":
        with np.load(npz) as z:
            arrays = dict(z)
        arrays["y_train"] = arrays["y_train"].copy()
        arrays["y_train"][5] = 11
        np.savez(out, **arrays)
    elif kind == "label-count":
        with np.load(npz) as z:
            arrays = dict(z)
        arrays["y_test"] = arrays["y_test"][:-1]
        np.savez(out, **arrays)
    elif kind == "wrong-keys":
        with np.load(npz) as z:
            np.savez(out, images=z["x_train"])
    return out


@pytest.mark.parametrize(
    "kind,words",
    [
        ("truncated", ["not a readable .npz"]),
        ("foreign", ["not a readable .npz"]),
        ("mislabelled", ["y_train", "labels must be 0..9", "11"]),
        ("label-count", ["y_test", "99 labels", "100 images"]),
        ("wrong-keys", ["missing key(s) x_train"]),
    ],
)
def test_bad_npz_data(tmp_path, npz, kind, words):
    bad = _bad_npz(tmp_path, npz, kind)
    out = tmp_path / "r"
    args = train_args(bad, out)
    refused(args, str(bad), *words, watch=out)


@pytest.mark.parametrize(
    "kind,words",
    [
        ("truncated", ["train-images-idx3-ubyte", "truncated"]),
        ("foreign", ["t10k-labels-idx1-ubyte", "not an IDX file"]),
        ("mislabelled", ["train-labels-idx1-ubyte", "labels must be 0..9"]),
        ("swapped", ["train-images-idx3-ubyte", "3-D"]),
    ],
)
def test_bad_idx_data(tmp_path, kind, words):
    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        np.arange(20, dtype=np.uint8) % 10,
        rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        np.arange(10, dtype=np.uint8) % 10,
    ]
    blobs = [idx_bytes(a) for a in arrays]
    if kind == "truncated":
        blobs[0] = blobs[0][:-100]
    elif kind == "foreign":
        blobs[3] = b"PK\x03\x04" + blobs[3][4:]
    elif kind == "mislabelled":
        blobs[1] = idx_bytes(np.full(20, 12, dtype=np.uint8))
    elif kind == "swapped":
        blobs[0], blobs[1] = blobs[1], blobs[0]
    folder = tmp_path / "idx"
    folder.mkdir()
    for stem, blob in zip(
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), blobs
    ):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(blob))
    out = tmp_path / "r"
    refused(train_args(folder, out), *words, watch=out)


def test_missing_data_path(tmp_path):
    refused(train_args(tmp_path / "nowhere.npz", tmp_path / "r"), "nowhere.npz", "no such file", watch=tmp_path / "r")


# --- run folders -----------------------------------------------------------------------------------


def test_resume_of_a_run_that_does_not_exist(tmp_path):
    refused(["train", "--resume", str(tmp_path / "ghost")], "ghost", "run folder not found", watch=tmp_path / "ghost")


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    refused(["train", "--resume", str(tmp_path / "notes")], "no mnist-vae run here", watch=tmp_path / "notes")


def test_resume_with_other_settings_is_refused(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    refused(["train", "--resume", str(run), "--set", "lr=0.1", "--binarize", "dynamic"], "--set", "--binarize", "only --epochs", watch=run)


def test_out_folder_holding_another_run(finished, npz, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    refused(train_args(npz, run), str(run), "already holds a run", "--resume", "--force", watch=run)


def test_out_folder_holding_other_files(npz, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    refused(train_args(npz, tmp_path / "mine"), "not empty", "holds no mnist-vae run", watch=tmp_path / "mine")


# --- checkpoints -------------------------------------------------------------------------------------


def _fix_manifest(ckpt: Path) -> None:
    """Make the manifest agree with the (replaced) files, so only the loader can object."""
    m = json.loads((ckpt / "manifest.json").read_text())
    m["files"] = {n: sha256_file(ckpt / n) for n in m["files"]}
    (ckpt / "manifest.json").write_text(json.dumps(m))


def _spoil(run: Path, kind: str) -> None:
    ckpt = list_checkpoints(run)[-1]
    weights = ckpt / "model.safetensors"
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif kind == "truncated-manifest-fixed":
        weights.write_bytes(weights.read_bytes()[:1000])
        _fix_manifest(ckpt)
    elif kind == "foreign-safetensors":
        save_file({"layer.weight": torch.zeros(3, 3)}, str(weights))
        _fix_manifest(ckpt)
    elif kind == "pickle-named-safetensors":
        torch.save({"layer.weight": torch.zeros(3)}, weights)
        _fix_manifest(ckpt)
    elif kind == "zip":
        with zipfile.ZipFile(weights, "w") as z:
            z.writestr("hello.txt", "not weights")
        _fix_manifest(ckpt)
    elif kind == "foreign-trainer":
        torch.save({"epoch": 3}, ckpt / "trainer.pt")
        _fix_manifest(ckpt)


@pytest.mark.parametrize(
    "kind,words",
    [
        ("truncated", ["fails its checksum", "no usable checkpoint"]),
        ("truncated-manifest-fixed", ["not a readable safetensors file", "no usable checkpoint"]),
        ("foreign-safetensors", ["not an mnist-vae checkpoint", "no usable checkpoint"]),
        ("pickle-named-safetensors", ["not a readable safetensors file", "no usable checkpoint"]),
        ("zip", ["not a readable safetensors file", "no usable checkpoint"]),
        ("foreign-trainer", ["trainer state lacks", "no usable checkpoint"]),
    ],
)
def test_damaged_or_foreign_checkpoint(finished, tmp_path, kind, words):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _spoil(run, kind)
    before = snapshot(run)
    result = run_in_process(["sample", str(run)])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-1].startswith("error: ") and "no usable checkpoint" in lines[-1]
    assert sum(ln.startswith("error:") for ln in lines) == 1 and "Traceback" not in result.stderr
    assert any(all(w in ln for w in words[:1]) for ln in lines), lines  # the warning says what is wrong
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "change,words",
    [
        ("latent_dim = 16", ["latent_dim is 16 in the checkpoint, 8 in the config"]),
        ("dropout = 0.25", ["dropout is 0.25 in the checkpoint, 0.1 in the config"]),  # same shapes: only the config can tell
    ],
)
def test_checkpoint_from_another_architecture_than_the_config(finished, tmp_path, change, words):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    key, _, value = change.partition(" = ")
    new = {"latent_dim": "8", "dropout": "0.1"}[key]
    toml = (run / "config.toml").read_text()
    assert change in toml
    (run / "config.toml").write_text(toml.replace(change, f"{key} = {new}"))
    refused(["train", "--resume", str(run), "--no-progress"], str(list_checkpoints(run)[-1]), "another configuration", *words, watch=run)
    refused(["sample", str(run)], "architecture differs", watch=run)
