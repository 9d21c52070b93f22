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
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import STUDY_EVAL, STUDY_TRAIN_PRECISION, EvalConfig, RunConfig
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..evaluation.classifier import get_classifier
from ..io import atomic_write_text, write_failure
from ..models import VAE
from ..models.flops import forward_flops
from ..presets import study_configs
from ..runtime.process import peak_rss_mb
from . import cost
from .executors import Executor, make_executor
from .jobs import Job, config_for, finished_rows, folder_name, run_job, work_left
from .report import summarize, write_report

log = logging.getLogger(__name__)

#: Settings a study folder keeps for good: a restart with other values would mix incomparable runs.
FIXED_SETTINGS = ("epochs", "k", "n_samples", "precision", "eval_seed", "binarize", "dataset_sha256", "train_device")


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
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failure(out, exc) from None
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
    estimate_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate ``configs`` (default: the study's list) with seeds 0..seeds-1; write the report.

    ``dataset`` is a name (``auto``, ``embedded``, ...) or a :class:`Dataset` object (tests, slices).
    ``jobs`` runs that many processes at once (``executor="local"``), splitting the cores; with
    ``executor="dask"`` the runs go to the Dask scheduler at ``scheduler``. ``classifier`` replaces
    the cached digit classifier (in-process runs only). ``device`` trains and evaluates there;
    ``train_precision`` sets every configuration's training precision (default ``auto``: bf16 where
    the hardware computes it natively; None keeps each configuration's own).
    ``report_only`` trains nothing: the report covers the runs already evaluated. ``estimate_only``
    prints the estimated cost of every run (timed on a few steps here) and returns it.
    """
    t0 = time.perf_counter()
    plan = _plan(configs, seeds, jobs, out, threads, executor, classifier)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_path or None)
    _configure(
        plan,
        epochs=epochs,
        binarize=binarize,
        device=device,
        precision=train_precision,
        data=None if isinstance(dataset, Dataset) else (dataset, data_path or ""),
    )
    costs = [] if report_only else _estimate(plan, settings, ds)
    if estimate_only:
        return {"estimate": cost.as_dict(costs, plan.workers)}
    record = {"epochs": epochs, "k": settings.k, "n_samples": settings.n_samples, "precision": settings.precision,
              "eval_seed": settings.seed, "binarize": binarize, "dataset_sha256": ds.sha256, "train_device": device,
              "configs": plan.names, "seeds": plan.seeds}  # fmt: skip
    _check_settings(plan.out, record)
    ex = None if report_only else make_executor(executor, plan.workers, scheduler)  # no dask / bad --scheduler: one line, before any work
    clf = classifier or get_classifier(ds)  # trained once here, so workers only read the cache
    todo = plan_jobs(plan, settings, device)
    if costs:
        by_config = {c.config: c for c in costs}
        line = cost.left_to_do([by_config[j.config] for j in todo], [work_left(j) for j in todo], plan.workers)
        if line:
            log.info(line)
    log.info(
        f"study: {len(plan.names)} configuration(s) x {len(plan.seeds)} seed(s) = {len(todo)} runs, {epochs} epochs, "
        f"K={settings.k}, {settings.n_samples:,} samples; {executor} executor, {plan.workers} job(s) x "
        f"{plan.threads or os.cpu_count()} thread(s); folder {plan.out}"
    )
    rows = finished_rows(todo) if ex is None else _execute(todo, ex, ds, clf)
    if not rows:
        raise ConfigError(f"{plan.out}: no run of this study has been trained and evaluated yet")
    meta = _meta(plan, settings, rows, ds, clf, costs, epochs=epochs, binarize=binarize, device=device, executor=executor,
                 wall=time.perf_counter() - t0, report_only=report_only)  # fmt: skip
    result, md, page = _report(plan, rows, meta)
    return {**result, "report_md": md, "report_html": page}


def _report(plan: StudyPlan, rows: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[dict[str, Any], Path, Path]:
    """Order the rows as configured, summarise them, write study.json and the report."""
    order = {(n, s): i for i, (n, s) in enumerate((n, s) for n in plan.names for s in plan.seeds)}
    rows.sort(key=lambda r: order[(r["config"], r["seed"])])
    result = summarize(rows, meta)
    atomic_write_text(plan.out / "study.json", json.dumps(result, indent=2, default=str))
    md, page = write_report(plan.out, result)
    log.info(f"report: {md} and {page} ({meta['wall_seconds']:.0f} s)")
    return result, md, page


def _meta(
    plan: StudyPlan,
    settings: EvalConfig,
    rows: list[dict[str, Any]],
    ds: Dataset,
    clf: Any,
    costs: list[cost.RunCost],
    *,
    epochs: int,
    binarize: str,
    device: str,
    executor: str,
    wall: float,
    report_only: bool = False,
) -> dict[str, Any]:
    """The study's settings and facts for the report and study.json."""
    return {
        "epochs": epochs, "k": settings.k, "n_samples": settings.n_samples, "eval_seed": settings.seed, "seeds": plan.seeds,
        "binarize": binarize, "precision": settings.precision, "device": device, "dataset": ds.info(),
        "train_precisions": sorted({r["train_precision"] for r in rows}), "configs": plan.names,
        "classifier_accuracy": getattr(clf, "test_accuracy", float("nan")), "frechet_floor": getattr(clf, "floor_frechet", float("nan")),
        "jobs": plan.workers, "executor": executor, "wall_seconds": round(wall, 1), "report_only": report_only,
        "run_minutes": {"train": _minutes(rows, "train_seconds"), "eval": _minutes(rows, "eval_seconds")},
        "nll_precisions": sorted({r["precision"] for r in rows}),
        "peak_rss_mb": round(max([peak_rss_mb(), *(r["peak_rss_mb"] for r in rows)])),
        "estimate": cost.as_dict(costs, plan.workers) if costs else None,
    }  # fmt: skip


def _minutes(rows: list[dict[str, Any]], key: str) -> float:
    """A per-run time in seconds, summed over the runs that recorded it, in minutes."""
    return round(sum(r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])) / 60, 1)


def _configure(plan: StudyPlan, *, epochs: int, binarize: str, device: str, precision: str | None, data: tuple[str, str] | None) -> None:
    """Give every configuration the study's epochs, binarisation, threads, device, precision and data."""
    changes: dict[str, Any] = {"epochs": epochs, "binarize": binarize, "threads": plan.threads, "device": device}
    if precision is not None:
        changes["precision"] = precision
    if data is not None:
        changes |= {"dataset": data[0], "data_path": data[1]}
    plan.configs = {n: c.replace(**changes) for n, c in plan.configs.items()}


def _estimate(plan: StudyPlan, settings: EvalConfig, ds: Dataset) -> list[cost.RunCost]:
    """Time a few steps of every configuration here and say what the whole study will cost."""
    costs = cost.estimate(plan.configs, len(plan.seeds), settings, len(ds.train_labels), len(ds.test_labels))
    log.info(f"study: the estimated cost of its {len(costs)} run(s) on this machine (each timed on a few steps):")
    for line in cost.describe(costs, plan.workers):
        log.info(line)
    return costs


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
    return StudyPlan(names, list(range(seeds)), resolved, Path(out), workers, threads)
