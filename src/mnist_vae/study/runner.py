"""The study as one call: train and evaluate configurations x seeds, then write the report.

Layout of the study folder ``OUT``::

    OUT/settings.json               what the study is run with; a restart with other settings is refused
    OUT/runs/<config>/seed<k>/      a normal run folder (checkpoints, figures) plus eval.json
    OUT/report.md, OUT/report.html  tables with intervals over seeds, the claim table, figures
    OUT/study.json                  every number of the report, per seed, machine-readable

Restarting a killed study continues it: a run whose eval.json matches the settings is skipped, an
unfinished run resumes from its newest checkpoint. Runs go to an executor: local processes
(``--jobs``) or a Dask cluster (``--executor dask``), whose workers must all reach ``OUT``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import STUDY_EVAL, STUDY_TRAIN_PRECISION, EvalConfig, RunConfig
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..evaluation.classifier import get_classifier
from ..evaluation.run import evaluate_run, resolved
from ..io import atomic_write_text
from ..models import VAE
from ..models.flops import forward_flops
from ..presets import get_config, study_configs
from ..runs.folder import RUN_MARKER, read_run_config
from ..runtime.device import resolve_device
from ..runtime.logging import LOGGER, configure
from ..runtime.process import peak_rss_mb, set_threads
from ..training import train
from .executors import Executor, make_executor
from .report import summarize, write_report

log = logging.getLogger(__name__)

#: Settings a study folder keeps for good: a restart with other values would mix incomparable runs.
FIXED_SETTINGS = ("epochs", "k", "n_samples", "precision", "eval_seed", "binarize", "dataset_sha256", "train_device")


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
    return {**table_row(path, ev), "config": job.config, "seed": job.seed, "peak_rss_mb": peak_rss_mb()}


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


def _cost(cfg: RunConfig) -> int:
    """Relative cost of a run: forward FLOPs per image (the order of work is longest first)."""
    return forward_flops(VAE(cfg.model))["total"]


@dataclass
class StudyPlan:
    """The resolved inputs of a study."""

    names: list[str]
    seeds: list[int]
    configs: dict[str, RunConfig]
    out: Path
    workers: int
    threads: int


def plan_jobs(plan: StudyPlan, settings: EvalConfig, eval_device: str) -> list[Job]:
    """Every (configuration, seed) run, longest configurations first, seeds in order."""
    order = sorted(plan.names, key=lambda n: _cost(plan.configs[n]), reverse=True)
    return [
        Job(n, s, plan.configs[n].replace(seed=s).to_dict(), str(plan.out / "runs" / folder_name(n) / f"seed{s}"), settings, eval_device)
        for n in order
        for s in plan.seeds
    ]


def _check_settings(out: Path, current: dict[str, Any]) -> None:
    """Refuse a study folder made with other settings (one line naming the first difference); record them otherwise."""
    path = out / "settings.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise ConfigError(f"{path}: unreadable; remove the study folder or choose another --out") from None
        for key in FIXED_SETTINGS:
            if saved.get(key) != current.get(key):
                raise ConfigError(
                    f"{out}: this study was made with {key} = {saved.get(key)!r}, not {current.get(key)!r}; "
                    f"use the same settings to continue it, or another --out"
                )
    atomic_write_text(path, json.dumps(current, indent=2))


def run_study(
    configs: list[str] | None = None,
    *,
    seeds: int = 3,
    epochs: int = 50,
    settings: EvalConfig = STUDY_EVAL,
    dataset: str | Dataset = "auto",
    data_path: str = "",
    binarize: str = "none",
    jobs: int = 1,
    out: str | Path = "study",
    classifier: Any = None,
    threads: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    device: str = "cpu",
    train_precision: str | None = STUDY_TRAIN_PRECISION,
    report_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate ``configs`` (default: the study's list) with seeds 0..seeds-1; write the report.

    ``dataset`` is a name (``auto``, ``embedded``, ...) or a :class:`Dataset` object (tests, slices).
    ``jobs`` runs that many processes at once (``executor="local"``), splitting the cores; with
    ``executor="dask"`` the runs go to the Dask scheduler at ``scheduler``. ``classifier`` replaces
    the cached digit classifier (in-process runs only). ``device`` trains and evaluates there;
    ``train_precision`` sets every configuration's training precision (default ``auto``: bf16 where
    the hardware computes it natively; None keeps each configuration's own).
    ``report_only`` trains nothing: the report covers the runs already evaluated.
    """
    t0 = time.perf_counter()
    plan = _plan(configs, seeds, jobs, out, threads, executor, classifier)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_path or None)
    changes: dict[str, Any] = {"epochs": epochs, "binarize": binarize, "threads": plan.threads, "device": device}
    if train_precision is not None:
        changes["precision"] = train_precision
    if not isinstance(dataset, Dataset):
        changes |= {"dataset": dataset, "data_path": data_path or ""}
    plan.configs = {n: c.replace(**changes) for n, c in plan.configs.items()}
    _check_settings(
        plan.out,
        {
            "epochs": epochs,
            "k": settings.k,
            "n_samples": settings.n_samples,
            "precision": settings.precision,
            "eval_seed": settings.seed,
            "binarize": binarize,
            "dataset_sha256": ds.sha256,
            "train_device": device,
            "configs": plan.names,
            "seeds": plan.seeds,
        },
    )
    ex = None if report_only else make_executor(executor, plan.workers, scheduler)  # no dask / bad --scheduler: one line, before any work
    clf = classifier or get_classifier(ds)  # trained once here, so workers only read the cache
    todo = plan_jobs(plan, settings, device)
    log.info(
        f"study: {len(plan.names)} configuration(s) x {len(plan.seeds)} seed(s) = {len(todo)} runs, {epochs} epochs, "
        f"K={settings.k}, {settings.n_samples:,} samples; {executor} executor, {plan.workers} job(s) x "
        f"{plan.threads or os.cpu_count()} thread(s); folder {plan.out}"
    )
    rows = _finished_rows(todo) if ex is None else _execute(todo, ex, ds, clf)
    if not rows:
        raise ConfigError(f"{plan.out}: no run of this study has been trained and evaluated yet")
    meta = {
        "epochs": epochs, "k": settings.k, "n_samples": settings.n_samples, "eval_seed": settings.seed, "seeds": plan.seeds,
        "binarize": binarize, "precision": settings.precision, "device": device, "dataset": ds.info(),
        "train_precisions": sorted({c.train.precision for c in plan.configs.values()}), "configs": plan.names,
        "classifier_accuracy": getattr(clf, "test_accuracy", float("nan")), "frechet_floor": getattr(clf, "floor_frechet", float("nan")),
        "jobs": plan.workers, "executor": executor, "wall_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(max([peak_rss_mb(), *(r["peak_rss_mb"] for r in rows)])),
    }  # fmt: skip
    order = {(n, s): i for i, (n, s) in enumerate((n, s) for n in plan.names for s in plan.seeds)}
    rows.sort(key=lambda r: order[(r["config"], r["seed"])])
    result = summarize(rows, meta)
    atomic_write_text(plan.out / "study.json", json.dumps(result, indent=2, default=str))
    md, page = write_report(plan.out, result)
    log.info(f"report: {md} and {page} ({meta['wall_seconds']:.0f} s)")
    return {**result, "report_md": md, "report_html": page}


def _finished_rows(todo: list[Job]) -> list[dict[str, Any]]:
    """The rows of the jobs already trained and evaluated with these settings; the others are named and left out."""
    rows = []
    for job in todo:
        cfg, path = RunConfig.from_dict(job.cfg), Path(job.run_dir)
        ev = _read_eval(path)
        if ev is not None and _eval_matches(ev, cfg.train.epochs, resolved(job.settings, resolve_device(job.eval_device))):
            rows.append({**table_row(path, ev), "config": job.config, "seed": job.seed, "peak_rss_mb": float("nan")})
        else:
            log.warning(f"[{job.config} seed {job.seed}] not trained and evaluated yet; left out of this report")
    return rows


def _execute(todo: list[Job], ex: Executor, ds: Dataset, clf: Any) -> list[dict[str, Any]]:
    """Run every job on the executor; the rows in the order they finished."""
    rows = []
    with ex:
        kwargs = {"dataset": ds, "classifier": clf} if ex.in_process else {}
        for i, (job, row) in enumerate(ex.run(run_job, todo, **kwargs), 1):
            rows.append(row)
            log.info(f"[{job.config} seed {job.seed}] done ({i}/{len(todo)})")
    return rows


def _plan(
    configs: list[str] | None, seeds: int, jobs: int, out: str | Path, threads: int | None, executor: str, classifier: Any
) -> StudyPlan:
    names = [c.strip() for c in (configs or study_configs()) if c.strip()]
    if len(set(names)) != len(names):
        raise ConfigError(f"--configs: a configuration is named twice in {','.join(names)}")
    resolved = {n: config_for(n) for n in names}  # unknown names fail here, before any training
    if seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {seeds}")
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    if classifier is not None and (jobs > 1 or executor != "local"):
        raise ConfigError("a classifier object can only be passed to a study run in this process (jobs=1, local executor)")
    workers = min(jobs, len(names) * seeds)
    cores = os.cpu_count() or 1
    threads = threads if threads is not None else (max(1, cores // workers) if workers > 1 else 0)
    root = Path(out)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    return StudyPlan(names, list(range(seeds)), resolved, root, workers, threads)


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
