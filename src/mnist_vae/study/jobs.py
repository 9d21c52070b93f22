"""One run of a study: a picklable :class:`Job`, and :func:`run_job`, which trains or resumes it and evaluates it.

Top-level functions, so that worker processes (local or Dask) can run them; a job is idempotent:
run again after a crash it resumes from the run's newest checkpoint, and an evaluated run is skipped.
"""

from __future__ import annotations

import json
import logging
import re
import shutil

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import EvalConfig, RunConfig
from ..data import Dataset
from ..evaluation.result import EvalResult
from ..evaluation.run import evaluate_run, resolved
from ..runs.folder import RUN_MARKER, read_run_config
from ..runtime.device import resolve_device
from ..runtime.logging import LOGGER, configure
from ..runtime.process import peak_rss_mb, set_threads
from ..training import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One (configuration, seed) run of a study: everything a worker process needs, picklable."""

    config: str
    seed: int
    cfg: dict[str, Any]
    run_dir: str
    settings: EvalConfig
    eval_device: str = "cpu"
    screen: bool = False  # evaluate only NLL, test ELBO and active units


def folder_name(spec: str) -> str:
    """A configuration spec as a folder name (``optimized[precision=bf16]`` -> ``optimized+precision=bf16``)."""
    return re.sub(r"[^\w.=+-]+", "+", spec.strip().replace("[", "+").rstrip("]"))


@contextmanager
def run_lock(run_dir: Path, wait: bool = False) -> Iterator[bool]:
    """Hold ``<run>.lock`` while this process works on the run; yields False if another process holds it
    (``wait``: block until it is free). The kernel drops the lock when its process dies, so a killed
    study leaves none behind."""
    if fcntl is None:  # no flock on this platform: no protection between processes
        yield True
        return
    path = run_dir.parent / f"{run_dir.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_job(job: Job, dataset: Dataset | None = None, classifier: Any = None, wait: bool = False) -> dict[str, Any]:
    """Train (or resume) one run and evaluate it; returns its table row. Top-level: workers run it.

    A run another process is working on (another study on the same folder) is left to it: the row
    is ``{"busy": True}``, unless ``wait``, which waits for that process and then uses (or finishes) its run.
    """
    if not logging.getLogger(LOGGER).handlers:  # a fresh worker process: talk like the parent
        configure("stderr")
    path = Path(job.run_dir)
    tag = f"{job.config} seed {job.seed}"
    ev = evaluated(job)
    if ev is not None:
        log.info(f"[{tag}] already trained and evaluated; skipped")
        return job_row(job, ev, peak_rss_mb())
    with run_lock(path) as mine:
        if mine:
            return _train_and_evaluate(job, dataset, classifier)
    if not wait:
        log.info(f"[{tag}] another process is working on this run; taking the others first")
        return {"busy": True, "config": job.config, "seed": job.seed}
    log.info(f"[{tag}] waiting for the other process working on this run")
    with run_lock(path, wait=True):
        return _train_and_evaluate(job, dataset, classifier)


def _train_and_evaluate(job: Job, dataset: Dataset | None, classifier: Any) -> dict[str, Any]:
    cfg = RunConfig.from_dict(job.cfg, source=f"study config {job.config}")
    path = Path(job.run_dir)
    tag = f"{job.config} seed {job.seed}"
    ev = evaluated(job)  # again, under the lock: another process may have finished it meanwhile
    if ev is None:
        with _prefixed(tag):
            if (path / RUN_MARKER).exists():
                # Restarted with another --jobs: keep the run's thread count, which resume must not change.
                train(cfg.replace(threads=read_run_config(path).train.threads), path, resume=True, progress=False, dataset=dataset)
            else:
                if path.exists():  # an empty or foreign leftover: nothing of a run in it
                    shutil.rmtree(path)
                train(cfg, path, progress=False, dataset=dataset)
            set_threads(cfg.train.threads)  # this job's share of the cores, even if the run was started with another
            ev = evaluate_run(path, job.settings, dataset=dataset, classifier=classifier, device=job.eval_device, screen=job.screen)
    else:
        log.info(f"[{tag}] already trained and evaluated; skipped")
    return job_row(job, ev, peak_rss_mb())


def evaluated(job: Job) -> EvalResult | None:
    """The run's eval.json if it is trained to the job's epochs and evaluated with its settings, else None."""
    ev = EvalResult.read(job.run_dir)
    if ev is None:
        return None
    s = resolved(job.settings, resolve_device(job.eval_device))
    iw = ev.iwae
    matches = (
        ev.epoch == job.cfg["train"]["epochs"]
        and iw.get("k") == s.k
        and iw.get("seed") == s.seed
        and iw.get("precision") == s.precision
        and bool(ev.screen) == job.screen
        and (job.screen or ((ev.samples or {}).get("n") == s.n_samples and ev.midpoint_readable is not None))
    )
    return ev if matches else None


def job_row(job: Job, ev: EvalResult, peak_mb: float) -> dict[str, Any]:
    """The study's row of a finished job: its table row, its name and seed, and the settings its run resolved to."""
    t = read_run_config(Path(job.run_dir)).train
    resolved_settings = {"epochs": t.epochs, "binarize": t.binarize, "device": t.device, "precision": t.precision, "threads": t.threads}
    return {
        **table_row(Path(job.run_dir), ev),
        "config": job.config,
        "seed": job.seed,
        "peak_rss_mb": peak_mb,
        "train_precision": t.precision,  # as resolved when it trained
        "resolved": resolved_settings,
    }


_NAN = float("nan")


def _measured(value: float | None) -> float:
    return _NAN if value is None else value


def table_row(run_dir: Path, ev: EvalResult) -> dict[str, Any]:
    """One seed's row: the run's metrics.jsonl and eval.json in one flat dict (NaN where a screen did not measure)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    history = [json.loads(line) for line in lines if line.strip()]
    seconds = sum(r["train_seconds"] for r in history)
    images = sum(r["train_seconds"] * r["images_per_second"] for r in history)
    s, iw = ev.samples or {}, ev.iwae
    return {
        "run": str(run_dir),
        "epochs": ev.epoch,
        "parameters": ev.parameters,
        "train_seconds": seconds,
        "images_per_second": images / seconds if seconds else _NAN,
        "elbo": ev.elbo,
        "recon": ev.recon,
        "kl": ev.kl,
        "recon_mu": ev.recon_mu,
        "nll": iw["nll"],
        "nll_stderr": iw["stderr"],
        "k": iw["k"],
        "precision": iw["precision"],
        "nll_seconds": iw["seconds"],
        "eval_seconds": ev.eval_seconds,
        "active_units": ev.active_units,
        "latent_dim": len(ev.mu_variance),
        "probe_accuracy": _measured(ev.probe_accuracy),
        "recon_accuracy": _measured(ev.recon_accuracy),
        "midpoint_readable": _measured(ev.midpoint_readable),
        "coverage": s.get("coverage", _NAN),
        "histogram": s.get("histogram", []),
        "entropy": s.get("entropy", _NAN),
        "blank_rate": s.get("blank_rate", _NAN),
        "frechet": s.get("frechet", _NAN),
        "frechet_floor": s.get("frechet_floor", _NAN),
        "binarized": ev.binarized,
        **{f"{k}_history": [r[k] for r in history] for k in ("test_loss", "test_recon", "test_kl", "train_loss")},
    }


def work_left(job: Job) -> tuple[float, float]:
    """(share of its training, share of its evaluation) this run still has to do, read from its folder."""
    if evaluated(job) is not None:
        return 0.0, 0.0
    path = Path(job.run_dir)
    try:
        lines = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if (path / RUN_MARKER).exists() else []
    except OSError:
        lines = []
    epochs_done = sum(1 for line in lines if line.strip())
    return max(0.0, 1.0 - epochs_done / job.cfg["train"]["epochs"]), 1.0


def finished_rows(todo: list[Job]) -> list[dict[str, Any]]:
    """The rows of the jobs already trained and evaluated with these settings; the others are named and left out."""
    rows = []
    for job in todo:
        ev = evaluated(job)
        if ev is not None:
            rows.append(job_row(job, ev, _NAN))
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
