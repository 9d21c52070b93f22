"""One run of a study: a picklable :class:`Job`, and :func:`run_job`, which trains or resumes it and evaluates it.

Top-level functions, so that worker processes (local or Dask) can run them; a job is idempotent:
run again after a crash it resumes from the run's newest checkpoint, and an evaluated run is skipped.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import EvalConfig, RunConfig
from ..data import Dataset
from ..errors import ConfigError
from ..evaluation.run import evaluate_run, resolved
from ..presets import get_config
from ..runs.folder import RUN_MARKER, read_run_config
from ..runtime.device import resolve_device
from ..runtime.logging import LOGGER, configure
from ..runtime.process import peak_rss_mb, set_threads
from ..training import train

log = logging.getLogger("mnist_vae.study.runner")


@dataclass(frozen=True)
class Job:
    """One (configuration, seed) run of a study: everything a worker process needs, picklable."""

    config: str
    seed: int
    cfg: dict[str, Any]
    run_dir: str
    settings: EvalConfig
    eval_device: str = "cpu"


def config_for(spec: str) -> RunConfig:
    """A configuration by name, or ``NAME[key=value,...]``: a preset with fields changed (its name is the spec)."""
    m = re.fullmatch(r"\s*([\w.-]+)\s*(?:\[(.*)\])?\s*", spec)
    if not m:
        raise ConfigError(f"--configs: {spec!r} is not NAME or NAME[key=value,...]")
    cfg = get_config(m.group(1))
    if m.group(2):
        cfg = cfg.override([item.strip() for item in m.group(2).split(",") if item.strip()])
    return cfg.replace(name=spec.strip())


def folder_name(spec: str) -> str:
    """A configuration spec as a folder name (``optimized[precision=bf16]`` -> ``optimized+precision=bf16``)."""
    return re.sub(r"[^\w.=+-]+", "+", spec.strip().replace("[", "+").rstrip("]"))


def run_job(job: Job, dataset: Dataset | None = None, classifier: Any = None) -> dict[str, Any]:
    """Train (or resume) one run and evaluate it; returns its table row. Top-level: workers run it."""
    if not logging.getLogger(LOGGER).handlers:  # a fresh worker process: talk like the parent
        configure("stderr")
    cfg = RunConfig.from_dict(job.cfg, source=f"study config {job.config}")
    path = Path(job.run_dir)
    tag = f"{job.config} seed {job.seed}"
    ev = _read_eval(path)
    if ev is None or not _eval_matches(ev, cfg.train.epochs, resolved(job.settings, resolve_device(job.eval_device))):
        with _prefixed(tag):
            if (path / RUN_MARKER).exists():
                # Restarted with another --jobs: keep the run's thread count, which resume must not change.
                train(cfg.replace(threads=read_run_config(path).train.threads), path, resume=True, progress=False, dataset=dataset)
            else:
                if path.exists():  # an empty or foreign leftover: nothing of a run in it
                    shutil.rmtree(path)
                train(cfg, path, progress=False, dataset=dataset)
            set_threads(cfg.train.threads)  # this job's share of the cores, even if the run was started with another
            ev = evaluate_run(path, job.settings, dataset=dataset, classifier=classifier, device=job.eval_device)
    else:
        log.info(f"[{tag}] already trained and evaluated; skipped")
    row = {**table_row(path, ev), "config": job.config, "seed": job.seed, "peak_rss_mb": peak_rss_mb()}
    return row | {"train_precision": read_run_config(path).train.precision}  # as resolved when it trained


def _read_eval(path: Path) -> dict[str, Any] | None:
    try:
        ev = json.loads((path / "eval.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return ev if isinstance(ev, dict) else None


def _eval_matches(ev: dict[str, Any], epochs: int, s: EvalConfig) -> bool:
    iw = ev.get("iwae", {})
    return (
        ev.get("epoch") == epochs
        and iw.get("k") == s.k
        and iw.get("seed") == s.seed
        and iw.get("precision") == s.precision
        and ev.get("samples", {}).get("n") == s.n_samples
        and "recon_accuracy" in ev
    )


def table_row(run_dir: Path, ev: dict[str, Any]) -> dict[str, Any]:
    """One seed's row: the run's metrics.jsonl and eval.json in one flat dict."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    history = [json.loads(line) for line in lines if line.strip()]
    seconds = sum(r["train_seconds"] for r in history)
    images = sum(r["train_seconds"] * r["images_per_second"] for r in history)
    s, iw = ev["samples"], ev["iwae"]
    return {
        "run": str(run_dir),
        "epochs": ev["epoch"],
        "parameters": ev["parameters"],
        "train_seconds": seconds,
        "images_per_second": images / seconds if seconds else float("nan"),
        "elbo": ev["elbo"],
        "recon": ev["recon"],
        "kl": ev["kl"],
        "recon_mu": ev["recon_mu"],
        "nll": iw["nll"],
        "nll_stderr": iw["stderr"],
        "k": iw["k"],
        "precision": iw["precision"],
        "nll_seconds": iw["seconds"],
        "eval_seconds": ev.get("eval_seconds", float("nan")),
        "active_units": ev["active_units"],
        "latent_dim": len(ev["mu_variance"]),
        "probe_accuracy": ev["probe_accuracy"],
        "recon_accuracy": ev.get("recon_accuracy", float("nan")),
        "coverage": s["coverage"],
        "histogram": s["histogram"],
        "entropy": s["entropy"],
        "blank_rate": s["blank_rate"],
        "frechet": s["frechet"],
        "frechet_floor": s["frechet_floor"],
        "binarized": ev["binarized"],
        **{f"{k}_history": [r[k] for r in history] for k in ("test_loss", "test_recon", "test_kl", "train_loss")},
    }


def work_left(job: Job) -> tuple[float, float]:
    """(share of its training, share of its evaluation) this run still has to do, read from its folder."""
    cfg, path = RunConfig.from_dict(job.cfg), Path(job.run_dir)
    ev = _read_eval(path)
    if ev is not None and _eval_matches(ev, cfg.train.epochs, resolved(job.settings, resolve_device(job.eval_device))):
        return 0.0, 0.0
    try:
        lines = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if (path / RUN_MARKER).exists() else []
    except OSError:
        lines = []
    epochs_done = sum(1 for line in lines if line.strip())
    return max(0.0, 1.0 - epochs_done / cfg.train.epochs), 1.0


def finished_rows(todo: list[Job]) -> list[dict[str, Any]]:
    """The rows of the jobs already trained and evaluated with these settings; the others are named and left out."""
    rows = []
    for job in todo:
        cfg, path = RunConfig.from_dict(job.cfg), Path(job.run_dir)
        ev = _read_eval(path)
        if ev is not None and _eval_matches(ev, cfg.train.epochs, resolved(job.settings, resolve_device(job.eval_device))):
            rows.append(
                {
                    **table_row(path, ev),
                    "config": job.config,
                    "seed": job.seed,
                    "peak_rss_mb": float("nan"),
                    "train_precision": read_run_config(path).train.precision,
                }
            )
        else:
            log.warning(f"[{job.config} seed {job.seed}] not trained and evaluated yet; left out of this report")
    return rows


class _Prefix(logging.Filter):
    """Prefix each record with ``[config seed k]`` so the interleaved lines of parallel jobs stay readable."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = f"[{tag}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("["):
            record.msg = self.tag + str(record.msg)
        return True


@contextmanager
def _prefixed(tag: str) -> Iterator[None]:
    f = _Prefix(tag)
    handlers = logging.getLogger(LOGGER).handlers
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)


def job_dict(job: Job) -> dict[str, Any]:
    """A job as plain data (for logs and tests)."""
    return asdict(job)
