"""Checkpoints: weights as safetensors, trainer state, and a manifest of checksums, written atomically.

A checkpoint is a folder ``RUN/checkpoints/E{epoch:04d}-S{step:05d}/`` holding

- ``model.safetensors``: the weights, with the run config as JSON in its metadata (and the
  plugins that built the model, if any), so a checkpoint alone is enough to rebuild the model;
- ``trainer.pt``: optimizer state, RNG states, progress and metric history (loaded with
  ``weights_only=True``: tensors and plain containers only);
- ``manifest.json``: format tag and the SHA-256 of the two files above, written last.

It is built in a hidden temporary folder, flushed, and renamed into place, so a folder with that
name is either complete or absent. The two newest good checkpoints are kept; a checkpoint whose
manifest is missing or whose checksums fail is skipped with a message, falling back to the one
before it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors

from ..config import RunConfig
from ..errors import CheckpointError, WriteError
from ..io import atomic_dir, atomic_write_text, read_safetensors, remove_stale_temps, sha256_file
from ..models.registry import PluginError, find, plugin_records

log = logging.getLogger(__name__)

FORMAT = "mnist-vae-checkpoint/1"
KEEP = 2
TRAINER_KEYS = ("optimizer", "torch_rng", "data_rng", "state")
_NAME = re.compile(r"^E(\d{4,})-S(\d{5,})$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: config, model weights and trainer state."""

    path: Path
    config: RunConfig
    weights: dict[str, torch.Tensor]
    trainer: dict[str, Any]


def require_plugins(records: Any, where: str) -> None:
    """Raise a one-line :class:`PluginError` naming what to install if a plugin a run was built with is missing.

    ``records`` is what :func:`~mnist_vae.models.registry.plugin_records` gave when the run was made
    (``meta.json`` -> ``plugins``); anything else (an older run, an unreadable file) is taken as "no plugins".
    """
    for role, record in records.items() if isinstance(records, dict) else ():
        if role not in ("encoder", "decoder") or not isinstance(record, dict) or not isinstance(record.get("kind"), str):
            continue
        kind, dist, version = record["kind"], record.get("distribution"), record.get("version")
        plugin = find(role, kind)
        if plugin is None and dist:
            named = f"{dist} {version}" if version else str(dist)
            pin = f"{dist}=={version}" if version else str(dist)
            raise PluginError(
                f"{where}: built with the {role} {kind!r} from {named}, which is not installed here; install it: pip install '{pin}'"
            )
        if plugin is None:
            raise PluginError(
                f"{where}: built with the {role} {kind!r} registered from Python in {record.get('module') or 'its module'}, "
                f"which is not registered here; call mnist_vae.register_{role}({kind!r}, ...) before opening the run"
            )
        if dist and plugin.distribution == dist and version and plugin.version and plugin.version != version:
            log.warning(f"{where}: built with {dist} {version}; {plugin.version} is installed")


def checkpoint_name(epoch: int, step: int) -> str:
    """Folder name for the state after ``epoch`` full epochs and ``step`` steps of the next."""
    return f"E{epoch:04d}-S{step:05d}"


def save_checkpoint(run_dir: Path, config: RunConfig, model: torch.nn.Module, trainer: dict[str, Any], epoch: int, step: int) -> Path:
    """Write a checkpoint atomically and prune old ones; returns its folder.

    Both files are serialised in memory and written with plain writes, so a full disk or a
    read-only folder surfaces as one :class:`WriteError` naming the checkpoint (torch and
    safetensors would report it in their own words), and the half-built folder is removed.
    """
    root = Path(run_dir) / "checkpoints"
    final = root / checkpoint_name(epoch, step)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT, "config": json.dumps(config.to_dict())}
    plugins = plugin_records(config.model)
    if plugins:
        metadata["plugins"] = json.dumps(plugins)
    blobs = {"model.safetensors": save_safetensors(weights, metadata=metadata)}
    buf = io.BytesIO()
    torch.save(trainer, buf)
    blobs["trainer.pt"] = buf.getvalue()
    try:
        with atomic_dir(final, replace=True) as tmp:  # the same position saved twice is replaced
            for name, data in blobs.items():
                with open(tmp / name, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            manifest = {
                "format": FORMAT,
                "epoch": epoch,
                "step": step,
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()},
            }
            # Written last and atomically: a folder with a valid manifest is a complete checkpoint.
            atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
    except WriteError as exc:  # name the checkpoint, not the file inside its temporary folder
        raise WriteError(f"cannot write {final}: {str(exc).rpartition(': ')[2]}") from None
    _prune(root)
    return final


def _prune(root: Path) -> None:
    # Keep the KEEP newest *good* checkpoints; anything older (or half-written leftovers) goes.
    remove_stale_temps(root)
    good = [p for p in list_checkpoints(root.parent) if verify_checkpoint(p) is None]
    keep = set(good[-KEEP:])
    for p in list_checkpoints(root.parent):
        if good and p not in keep and p < good[-1]:
            shutil.rmtree(p, ignore_errors=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (by epoch, then step)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def verify_checkpoint(path: Path) -> str | None:
    """None if the checkpoint's files match its manifest, else a short reason."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "manifest.json is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "manifest.json is unreadable"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        return f"not a {FORMAT} checkpoint"
    for name in ("model.safetensors", "trainer.pt"):
        expected = manifest["files"].get(name)
        try:
            actual = sha256_file(path / name)
        except OSError:
            return f"{name} is missing"
        if actual != expected:
            return f"{name} fails its checksum"
    return None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load one checkpoint folder; any damage raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    problem = verify_checkpoint(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    weights, config = read_weights(path / "model.safetensors")
    try:
        trainer = torch.load(path / "trainer.pt", map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged pickles
        raise CheckpointError(f"{path / 'trainer.pt'}: unreadable trainer state ({type(exc).__name__})") from None
    if not isinstance(trainer, dict):
        raise CheckpointError(f"{path / 'trainer.pt'}: trainer state is not a dict")
    missing = [k for k in TRAINER_KEYS if k not in trainer]
    if missing:
        raise CheckpointError(f"{path / 'trainer.pt'}: trainer state lacks {', '.join(missing)}; not written by this program")
    return Checkpoint(path=path, config=config, weights=weights, trainer=trainer)


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], RunConfig]:
    """Weights and embedded config of a ``model.safetensors`` written by this program."""
    path = Path(path)
    weights, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path}: not an mnist-vae checkpoint (no {FORMAT} metadata)")
    try:
        plugins = json.loads(metadata.get("plugins") or "{}")
    except ValueError:
        plugins = {}  # damaged: the config below says what is missing
    require_plugins(plugins, str(path))
    try:
        config = RunConfig.from_dict(json.loads(metadata["config"]), source=f"{path} metadata")
    except PluginError:  # a plugin that fails to load is no damage of the checkpoint
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and ConfigError are ValueErrors
        raise CheckpointError(f"{path}: embedded config is invalid: {str(exc).splitlines()[0][:200]}") from None
    return weights, config


def latest_checkpoint(run_dir: Path, faults: list[str] | None = None) -> Checkpoint | None:
    """The newest checkpoint that loads; damaged newer ones are skipped with a logged warning.

    ``faults`` (if given) receives one line per damaged checkpoint, newest first.
    """
    paths = list_checkpoints(run_dir)
    for i in range(len(paths) - 1, -1, -1):
        try:
            return load_checkpoint(paths[i])
        except CheckpointError as exc:
            log.warning(f"skipping damaged checkpoint {exc}" + ("; falling back to the previous one" if i else ""))
            if faults is not None:
                faults.append(str(exc))
    return None


def load_model_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights, turning an architecture mismatch into a one-line :class:`CheckpointError`."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"{wrong[0]} has shape {tuple(weights[wrong[0]].shape)}, the config needs {tuple(own[wrong[0]].shape)}"
        )
        raise CheckpointError(f"{source}: weights do not fit this architecture ({detail})")
    model.load_state_dict(weights)
