"""Trained weights that ship with the package: ``assets/pretrained/<name>.safetensors`` and ``pretrained.json``.

Each file is a checkpoint's ``model.safetensors`` copied byte for byte (float32 weights, the run
config in its metadata). ``pretrained.json`` records, per name, the file's SHA-256 and size, how
it was made (command, source commit, epochs, seed, dataset and its SHA-256), the run's per-epoch
metrics, and the test −ELBO measured by :func:`measure_test_elbo`, the check a reader can repeat.
``scripts/build_pretrained.py`` writes both; this module only reads them.

:func:`open_pretrained` verifies the SHA-256 before it reads a weight and returns the same
:class:`~mnist_vae.runs.folder.Run` that :func:`~mnist_vae.runs.folder.open_run` gives for a run
folder, so everything that takes an opened run (the notebook API, the explorer) takes it too.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data import Dataset, load_dataset, prepare_data
from ..errors import CheckpointError, ConfigError
from ..io import sha256_file
from ..losses import elbo
from ..models import VAE
from ..seeds import Seeds
from .checkpoint import load_model_weights, read_weights
from .folder import Run

FORMAT = "mnist-vae-pretrained/1"
MANIFEST = "pretrained.json"


def pretrained_dir() -> Path:
    """The folder of the shipped weights and their manifest (inside the installed package)."""
    return Path(str(importlib.resources.files("mnist_vae").joinpath("assets/pretrained")))


def read_manifest(directory: str | Path | None = None) -> dict[str, Any]:
    """``pretrained.json`` as a dict ({"format", "models": {name: entry}}); a missing one is an empty manifest."""
    path = Path(directory or pretrained_dir()) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"format": FORMAT, "models": {}}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}); reinstall the package") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("models"), dict):
        raise CheckpointError(f"{path}: not a {FORMAT} manifest; reinstall the package")
    return manifest


def pretrained_entry(name: str, directory: str | Path | None = None) -> dict[str, Any]:
    """The manifest's record of ``name``; :class:`ConfigError` listing the valid names if there is none."""
    models = read_manifest(directory)["models"]
    if name not in models:
        valid = ", ".join(sorted(models)) or "none are installed"
        raise ConfigError(f"pretrained: no weights named {name!r}; valid names: {valid}")
    entry = models[name]
    if not isinstance(entry, dict):
        raise CheckpointError(f"{Path(directory or pretrained_dir()) / MANIFEST}: the entry for {name!r} is not an object")
    return entry


def pretrained_path(name: str, directory: str | Path | None = None) -> Path:
    """The weights file of ``name`` (not yet verified)."""
    return Path(directory or pretrained_dir()) / str(pretrained_entry(name, directory).get("file", f"{name}.safetensors"))


def open_pretrained(name: str, device: str | torch.device = "cpu", directory: str | Path | None = None) -> Run:
    """The shipped model ``name`` as an opened :class:`Run` (eval mode); its SHA-256 is checked before it is read.

    ``Run.path`` is the weights file; ``history`` and ``meta`` come from the manifest.
    """
    entry = pretrained_entry(name, directory)
    path = pretrained_path(name, directory)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the pretrained weights ({exc.strerror or exc}); reinstall the package") from None
    if actual != entry.get("sha256"):
        raise CheckpointError(f"{path}: fails its checksum (sha256 {actual[:12]}..., the manifest says {str(entry.get('sha256'))[:12]}...)")
    weights, config = read_weights(path)
    if config.name != name:
        raise CheckpointError(f"{path}: holds configuration {config.name!r}, not {name!r}")
    model = VAE(config.model)
    load_model_weights(model, weights, path)
    model.to(device).eval()
    meta = {
        "parameters": entry.get("parameters"),
        "created": entry.get("created"),
        "dataset": entry.get("dataset") or {},
        "pretrained": name,
    }
    return Run(path, config, model, int(entry.get("epochs", 0)), list(entry.get("history") or []), {}, meta)


def elbo_seed(config: RunConfig, epoch: int) -> int:
    """The generator seed of the test −ELBO the trainer records for epoch ``epoch`` (1-based): ``seed * 1000 + epoch - 1``."""
    return Seeds(config.train.seed).test_elbo(epoch - 1)


def measure_test_elbo(model: VAE, config: RunConfig, epoch: int, dataset: Dataset | None = None) -> dict[str, Any]:
    """The run's test −ELBO again: :func:`~mnist_vae.losses.elbo` on the test split, on the CPU, in fp32.

    The same protocol as the trainer's end-of-epoch measurement (batch ``eval_batch_size``, one z
    per image from a CPU generator seeded :func:`elbo_seed`), so on the machine that trained
    it the value matches ``metrics.jsonl``; it is deterministic for given weights and data.
    """
    data = prepare_data(config, torch.device("cpu"), dataset=dataset or load_dataset(config.train.dataset, download=False))
    seed = elbo_seed(config, epoch)
    cpu_model = model.to("cpu")
    result = elbo(cpu_model, data.test_x, config.train.eval_batch_size, torch.Generator(device="cpu").manual_seed(seed))
    return {
        **result,
        "split": "test",
        "dataset": data.dataset.name,
        "n_images": len(data.test_x),
        "generator_seed": seed,
        "batch_size": config.train.eval_batch_size,
    }
