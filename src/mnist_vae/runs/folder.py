"""A run folder's lifecycle: claim it atomically, record what ran, open it again later.

A run folder holds ``run.json`` (the marker: a run lives here), ``config.toml``, ``meta.json``,
``metrics.jsonl``, ``checkpoints/`` and the figures. :func:`claim_run_dir` creates it with the
first three already inside (built in a hidden temporary folder, then renamed), so a process
killed at any moment leaves either no folder or one that ``--resume`` continues.
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._version import __version__
from ..config import RESUMABLE, RunConfig, load_toml
from ..errors import CheckpointError, ConfigError, RunExistsError
from ..io import atomic_dir, atomic_write_text, remove_stale_temps, write_failure
from ..models import VAE
from .checkpoint import Checkpoint, latest_checkpoint, load_model_weights, require_plugins

if TYPE_CHECKING:
    from ..data import Dataset

RUN_MARKER = "run.json"  # every run folder has one; its presence means "a run lives here"


def new_run_dir(cfg: RunConfig, out: str | Path | None, root: str | Path = "runs") -> Path:
    """``out`` if given, else ``runs/<config>-<YYYYmmdd-HHMMSS>``."""
    if out:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{cfg.name}-{stamp}"


def check_run_dir(run_dir: Path, force: bool) -> bool:
    """Raise :class:`RunExistsError` if a new run may not go into ``run_dir``; writes nothing.

    Returns True if it holds a run that ``force`` allows to be replaced.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunExistsError(f"{run_dir}: exists and is not a folder")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / RUN_MARKER).exists():
            raise RunExistsError(f"{run_dir}: folder is not empty and holds no mnist-vae run; choose another --out")
        if not force:
            raise RunExistsError(f"{run_dir}: already holds a run; use --resume {run_dir} to continue it or --force to replace it")
        return True
    return False


def _temp_prefix(run_dir: Path) -> str:
    return f".{run_dir.name}.tmp-"


def claim_run_dir(run_dir: Path, cfg: RunConfig, meta: dict[str, Any], replace: bool) -> None:
    """Create ``run_dir`` with ``run.json``, ``config.toml`` and ``meta.json`` inside, in one rename.

    ``replace``: what :func:`check_run_dir` answered (the run there may be replaced); it is the
    caller's to ask first, before any data is read. Leftovers of an earlier claim of the same name
    that was killed half-way (hidden ``.NAME.tmp-*`` folders beside it) are removed.
    """
    for stale in run_dir.parent.glob(_temp_prefix(run_dir) + "*") if run_dir.parent.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_dir(run_dir, replace=replace or run_dir.is_dir(), prefix=_temp_prefix(run_dir)) as tmp:
        atomic_write_text(tmp / "config.toml", cfg.to_toml())
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2))
        atomic_write_text(tmp / RUN_MARKER, json.dumps({"program": "mnist-vae", "format": 1}))


def prepare_resume(run_dir: Path) -> None:
    """Remove what a killed process left half-written in a run folder (temporaries, partial checkpoints)."""
    try:
        remove_stale_temps(run_dir)
        remove_stale_temps(run_dir / "checkpoints")
    except OSError as exc:
        raise write_failure(run_dir, exc) from None


def start_run_folder(run_dir: Path, cfg: RunConfig, meta: dict[str, Any] | None, replace: bool) -> None:
    """What the main process writes before training: a new run's folder claimed with ``meta``
    (:func:`claim_run_dir`), or, for a resumed run (``meta`` None), the folder readied and its
    ``config.toml`` rewritten, which records a changed epoch count."""
    if meta is not None:
        claim_run_dir(run_dir, cfg, meta, replace)
        return
    prepare_resume(run_dir)
    atomic_write_text(run_dir / "config.toml", cfg.to_toml())


def resume_point(run_dir: Path, cfg: RunConfig, processes: int = 1) -> Checkpoint | None:
    """The newest good checkpoint of the run in ``run_dir`` (None: none yet), once ``cfg`` is shown to continue that run.

    ``cfg`` may differ from the run's ``config.toml``, and from the checkpoint's own config, only in
    :data:`~mnist_vae.config.RESUMABLE`; the error names the first other field that differs. A
    checkpoint saved mid-epoch resumes only in as many ``processes`` as wrote it (its batch split).
    """
    may = " and ".join(f"train.{f}" for f in RESUMABLE)
    diff = read_run_config(run_dir).resume_difference(cfg)
    if diff:
        raise ConfigError(
            f"{run_dir}: --resume may only change {may}; {diff[0]} is {diff[1]!r} in the run's config.toml, {diff[2]!r} given"
        )
    ckpt = latest_checkpoint(run_dir)
    diff = ckpt.config.resume_difference(cfg) if ckpt is not None else None
    if ckpt is not None and diff:
        raise CheckpointError(
            f"{ckpt.path}: written for another configuration than {run_dir / 'config.toml'} "
            f"({diff[0]} is {diff[1]!r} in the checkpoint, {diff[2]!r} in the config); restore the run's config.toml"
        )
    saved = int(ckpt.trainer.get("world_size", 1)) if ckpt is not None else processes
    if ckpt is not None and ckpt.trainer["state"]["step"] and saved != processes:
        raise ConfigError(
            f"{ckpt.path}: saved mid-epoch by {saved} process(es), this is {processes}; "
            f"resume it with {saved} (--nproc {saved}, or torchrun --nproc_per_node {saved})"
        )
    return ckpt


def run_meta(
    cfg: RunConfig, dataset: Dataset, parameters: int, threads: int, device: torch.device, processes: int, plugins: dict[str, Any]
) -> dict[str, Any]:
    """What ``meta.json`` records: data actually used, model size, versions, machine, and the plugins that built the model
    (:func:`~mnist_vae.models.registry.plugin_records`, resolved at the run's entry)."""
    return {
        "program": "mnist-vae",
        "version": __version__,
        "config": cfg.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset.info(),
        "parameters": parameters,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "device": str(device),
        "threads": threads,
        "processes": processes,
        **({"plugins": plugins} if plugins else {}),
    }


def read_run_config(run_dir: Path) -> RunConfig:
    """The config a run was started with (``RUN/config.toml``).

    A plugin the run was built with that is not installed here raises a one-line
    :class:`~mnist_vae.models.PluginError` saying what to install.
    """
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    if not (Path(run_dir) / RUN_MARKER).exists():
        raise CheckpointError(f"{run_dir}: no mnist-vae run here (missing {RUN_MARKER})")
    require_plugins(read_meta(run_dir).get("plugins"), str(run_dir))
    return load_toml(Path(run_dir) / "config.toml")


def read_meta(run_dir: Path) -> dict[str, Any]:
    """``RUN/meta.json`` as a dict ({} when missing or unreadable)."""
    try:
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``, rewritten whole from the checkpointed history so the two always agree."""
    atomic_write_text(Path(run_dir) / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


def check_same_data(run_dir: Path, dataset: Dataset, error: type[Exception] = CheckpointError) -> None:
    """Refuse data whose checksum differs from the one the run recorded in ``meta.json``."""
    recorded = (read_meta(run_dir).get("dataset") or {}).get("sha256")
    if recorded and recorded != dataset.sha256:
        raise error(
            f"{run_dir}: the run was trained on data with sha256 {recorded[:12]}..., but the data loaded now has {dataset.sha256[:12]}..."
        )


@dataclass
class Run:
    """A run folder's config, its newest good model (eval mode) and its recorded progress."""

    path: Path
    config: RunConfig
    model: VAE
    epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def open_run(run_dir: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load ``run_dir``'s newest good checkpoint; :class:`CheckpointError` if there is none.

    A damaged newer checkpoint is skipped with a logged warning naming it and its fault.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run folder not found")
    config = read_run_config(run_dir)
    faults: list[str] = []
    ckpt = latest_checkpoint(run_dir, faults)
    if ckpt is None:
        detail = f" ({faults[0]})" if faults else " (none has been written yet)"
        raise CheckpointError(f"{run_dir}: no usable checkpoint in {run_dir / 'checkpoints'}{detail}")
    if ckpt.config.model != config.model:
        raise CheckpointError(f"{ckpt.path}: checkpoint architecture differs from {run_dir / 'config.toml'}")
    model = VAE(config.model)
    load_model_weights(model, ckpt.weights, ckpt.path / "model.safetensors")
    model.to(device).eval()
    state = ckpt.trainer.get("state", {})
    return Run(
        run_dir,
        config,
        model,
        int(state.get("epoch", 0)),
        list(state.get("history", [])),
        dict(state.get("snapshots", {})),
        read_meta(run_dir),
    )
