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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..evaluation.classifier import get_classifier
from ..io import atomic_write_text, write_failure
from ..models import VAE
from ..models.flops import forward_flops
from ..presets import study_configs
from ..runtime.process import peak_rss_mb
from . import cost, settle
from .claims import evaluate_claims
from .executors import Executor, make_executor
from .jobs import Job, finished_rows, folder_name, run_job, work_left
from .report import summarize, write_report
from .settings import StudySettings, study_config

log = logging.getLogger(__name__)


def _cost(cfg: RunConfig) -> int:
    """Relative cost of a run: forward FLOPs per image (the order of work is longest first)."""
    return forward_flops(VAE(cfg.model))["total"]


@dataclass
class StudyPlan:
    """The resolved inputs of a study: its configurations as each run trains them, seeds and workers."""

    names: list[str]
    seeds: list[int]
    configs: dict[str, RunConfig]
    out: Path
    workers: int
    threads: int


def plan_jobs(plan: StudyPlan, s: StudySettings, seeds: dict[str, list[int]] | None = None) -> list[Job]:
    """Every (configuration, seed) run, longest configurations first, seeds in order (``seeds``: only these, per configuration)."""
    order = sorted(
        plan.names if seeds is None else [n for n in plan.names if n in seeds], key=lambda n: _cost(plan.configs[n]), reverse=True
    )
    eval_device = s.defaults()["device"]
    return [
        Job(
            n,
            k,
            plan.configs[n].replace(seed=k).to_dict(),
            str(plan.out / "runs" / folder_name(n) / f"seed{k}"),
            s.eval,
            eval_device,
            s.screen,
        )
        for n in order
        for k in (seeds or {}).get(n, plan.seeds)
    ]


@dataclass(frozen=True)
class StudyRecord:
    """What a study folder is made with, ``OUT/settings.json`` (written and read here only; the keys are its fields).

    A restart must match every field but ``configs`` and ``seeds`` (:data:`FIXED_SETTINGS`): other
    values would mix incomparable runs.
    """

    epochs: int
    k: int
    n_samples: int
    precision: str
    eval_seed: int
    binarize: str
    dataset_sha256: str
    train_device: str
    screen: bool
    configs: list[str]
    seeds: list[int]

    @classmethod
    def of(cls, s: StudySettings, plan: StudyPlan, ds: Dataset) -> StudyRecord:
        """The record of a study run with ``s`` on ``ds`` as ``plan`` lays it out."""
        d, e = s.defaults(), s.eval
        return cls(
            d["epochs"], e.k, e.n_samples, e.precision, e.seed, d["binarize"], ds.sha256, d["device"], s.screen, plan.names, plan.seeds
        )


#: Settings a study folder keeps for good: every field of the record but the configurations and seeds.
FIXED_SETTINGS = tuple(f.name for f in fields(StudyRecord) if f.name not in ("configs", "seeds"))


def _check_settings(out: Path, record: StudyRecord) -> None:
    """Refuse a study folder made with other settings (one line naming the first difference); record them otherwise."""
    path = out / "settings.json"
    current = asdict(record)
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
    settings: StudySettings = StudySettings(),
    *,
    dataset: Dataset | None = None,
    classifier: Any = None,
    report_only: bool = False,
    estimate_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate ``settings.configs`` (default: the study's list) with seeds 0..seeds-1; write the report.

    ``dataset`` replaces loading ``settings.dataset`` (tests, slices); ``classifier`` replaces the
    cached digit classifier (in-process runs only). ``report_only`` trains nothing: the report
    covers the runs already evaluated. ``estimate_only`` prints the estimated cost of every run
    (timed on a few steps here) and returns it.
    """
    t0 = time.perf_counter()
    s = settings
    ds = dataset if dataset is not None else load_dataset(s.dataset, s.data_path or None)
    plan = _plan(s, classifier, data=None if dataset is not None else (s.dataset, s.data_path))
    costs = [] if report_only else _estimate(plan, s, ds)
    if estimate_only:
        return {"estimate": cost.as_dict(costs, plan.workers)}
    record = StudyRecord.of(s, plan, ds)
    _check_settings(plan.out, record)
    ex = None if report_only else make_executor(s.executor, plan.workers, s.scheduler)  # a bad --scheduler: one line, before any work
    clf = None if s.screen else classifier or get_classifier(ds)  # trained once here, so workers only read the cache
    rounds = _rounds(plan, s)
    todo = [j for r in rounds for j in plan_jobs(plan, s, r)]
    if costs:
        by_config = {c.config: c for c in costs}
        line = cost.left_to_do([by_config[j.config] for j in todo], [work_left(j) for j in todo], plan.workers)
        if line:
            log.info(line)
    log.info(
        f"study: {len(plan.names)} configuration(s) x {len(plan.seeds)} seed(s) = {len(todo)} runs, {record.epochs} epochs, "
        f"K={s.eval.k}{'' if s.screen else f', {s.eval.n_samples:,} samples'}; {s.executor} executor, {plan.workers} job(s) x "
        f"{plan.threads or os.cpu_count()} thread(s); folder {plan.out}"
    )
    stop = None
    if ex is None:
        rows = finished_rows(todo)
    else:
        with ex:
            rows = _execute(todo, ex, ds, clf)
            if s.until_settled:
                rows, stop = _settle(plan, s, rounds, rows, ex, ds, clf, costs, t0)
    if not rows:
        raise ConfigError(f"{plan.out}: no run of this study has been trained and evaluated yet")
    meta = _meta(plan, s, rows, ds, clf, costs, wall=time.perf_counter() - t0, report_only=report_only)
    if s.until_settled:
        meta |= {"rounds": rounds, "stop_reason": stop}
    result, md, page = _report(plan, rows, meta)
    return {**result, "report_md": md, "report_html": page}


def _rounds(plan: StudyPlan, s: StudySettings) -> list[dict[str, list[int]]]:
    """The rounds of seeds this study runs first: the first round, and any rounds an earlier --until-settled took."""
    first = {n: list(plan.seeds) for n in plan.names}
    rounds = settle.load_rounds(plan.out)
    if not s.until_settled:
        if len(rounds) > 1:
            raise ConfigError(f"{plan.out}: this study added seeds in rounds (--until-settled); continue or report it with --until-settled")
        return [first]
    if not rounds:
        rounds = [first]
        settle.save_rounds(plan.out, rounds)
    elif {n: v for n, v in rounds[0].items()} != first:
        raise ConfigError(f"{plan.out}: its sequential rounds began with other configurations or seeds; use the same --configs and --seeds")
    return rounds


def _settle(
    plan: StudyPlan,
    s: StudySettings,
    rounds: list[dict[str, list[int]]],
    rows: list[dict[str, Any]],
    ex: Executor,
    ds: Dataset,
    clf: Any,
    costs: list[cost.RunCost],
    t0: float,
) -> tuple[list[dict[str, Any]], str]:
    """Add rounds of seeds where claims are open, until they are settled, --max-seeds, or the budget would be overrun.

    A round's wall time is estimated from the runs this study finished (per configuration and number
    of jobs) and from how long the rounds it timed took (:func:`cost.round_estimate`); the budget is
    checked against the upper end of what was observed. Each round's estimate and measured time are
    logged and kept in rounds.json.
    """
    by_config = {c.config: c for c in costs if not c.first}
    timing = settle.load_timing(plan.out)
    if not any(t["round"] == 1 for t in timing):  # the first round ran just now, in this process
        first = [r for r in rows if r["seed"] in rounds[0].get(r["config"], [])]
        est, upper = cost.round_estimate([by_config[j.config] for j in plan_jobs(plan, s, rounds[0])], cost.Observed(), plan.workers)
        measured = cost.round_wall(first, since=time.time() - (time.perf_counter() - t0))
        timing.insert(0, {"round": 1, "jobs": plan.workers, "estimate_s": est, "upper_s": upper, "measured_s": measured,
                          "source": cost.source(costs)})  # fmt: skip
        settle.save_rounds(plan.out, rounds, timing)
        log.info(f"until-settled: round 1 {_took(timing[0])}")
    while True:
        claims = evaluate_claims(rows, sequential=True)
        seen = cost.observe(rows, rounds, timing, plan.workers)
        learned = {c.config: c for c in cost.learn(list(by_config.values()), seen, plan.workers)}
        minutes = {n: c.total_s / 60 for n, c in learned.items()}  # claims are fed cheapest first
        nxt, why = settle.next_round(claims, settle.seeds_so_far(rounds), s.max_seeds, plan.workers, minutes)
        if not nxt:
            log.info(f"until-settled: stopping: {why}")
            return rows, why
        jobs = plan_jobs(plan, s, nxt)
        need, upper = cost.round_estimate([learned[j.config] for j in jobs], seen, plan.workers)
        gone = time.perf_counter() - t0
        if s.budget_s is not None and gone + upper > s.budget_s:
            why = (
                f"the next round ({len(jobs)} run(s) of {', '.join(nxt)}) would take about {need / 60:.1f} min, up to "
                f"{upper / 60:.1f} min; {gone / 60:.0f} min are gone, so it could overrun the budget of {s.budget_s / 60:.0f} min"
            )
            log.info(f"until-settled: stopping before the next round: {why}")
            return rows, why
        rounds.append(nxt)
        record = {"round": len(rounds), "jobs": plan.workers, "estimate_s": need, "upper_s": upper, "measured_s": None,
                  "source": cost.source([learned[j.config] for j in jobs])}  # fmt: skip
        timing = [t for t in timing if t["round"] != len(rounds)] + [record]
        settle.save_rounds(plan.out, rounds, timing)  # recorded before it runs: a restarted study runs the same round
        log.info(f"until-settled: round {len(rounds)}: {why}; {len(jobs)} run(s), about {need / 60:.1f} min (up to {upper / 60:.1f} min)")
        start = time.perf_counter()
        rows += _execute(jobs, ex, ds, clf)
        record["measured_s"] = time.perf_counter() - start
        settle.save_rounds(plan.out, rounds, timing)
        log.info(f"until-settled: round {len(rounds)} {_took(record)}")


def _took(t: dict[str, Any]) -> str:
    """A round's measured wall time beside its estimate, for the log."""
    took = "took an unknown time (its runs began before this start of the study, or their folders do not say when)"
    if t["measured_s"] is not None:
        took = f"took {t['measured_s'] / 60:.1f} min"
    return f"{took}; estimated about {t['estimate_s'] / 60:.1f} min, up to {t['upper_s'] / 60:.1f} min ({t['source']})"


def _report(plan: StudyPlan, rows: list[dict[str, Any]], meta: dict[str, Any]) -> tuple[dict[str, Any], Path, Path]:
    """Order the rows as configured, summarise them, write study.json and the report."""
    rows.sort(key=lambda r: (plan.names.index(r["config"]), r["seed"]))
    result = summarize(rows, meta)
    atomic_write_text(plan.out / "study.json", json.dumps(result, indent=2, default=str))
    md, page = write_report(plan.out, result)
    log.info(f"report: {md} and {page} ({meta['wall_seconds']:.0f} s)")
    return result, md, page


def _meta(
    plan: StudyPlan,
    s: StudySettings,
    rows: list[dict[str, Any]],
    ds: Dataset,
    clf: Any,
    costs: list[cost.RunCost],
    *,
    wall: float,
    report_only: bool = False,
) -> dict[str, Any]:
    """The study's settings and facts for the report and study.json."""
    r = StudyRecord.of(s, plan, ds)
    return {
        "epochs": r.epochs, "k": r.k, "n_samples": r.n_samples, "eval_seed": r.eval_seed, "seeds": r.seeds,
        "binarize": r.binarize, "precision": r.precision, "device": r.train_device, "dataset": ds.info(), "screen": r.screen,
        "train_precisions": sorted({row["train_precision"] for row in rows}), "configs": r.configs,
        "classifier_accuracy": getattr(clf, "test_accuracy", float("nan")), "frechet_floor": getattr(clf, "floor_frechet", float("nan")),
        "jobs": plan.workers, "executor": s.executor, "wall_seconds": round(wall, 1), "report_only": report_only,
        "run_minutes": {"train": _minutes(rows, "train_seconds"), "eval": _minutes(rows, "eval_seconds")},
        "seeds_by_config": {n: sorted(row["seed"] for row in rows if row["config"] == n) for n in plan.names},
        "sequential": s.until_settled, "max_seeds": s.max_seeds if s.until_settled else None, "budget_s": s.budget_s,
        "nll_precisions": sorted({row["precision"] for row in rows}),
        "peak_rss_mb": round(max([peak_rss_mb(), *(row["peak_rss_mb"] for row in rows)])),
        "estimate": cost.as_dict(costs, plan.workers) if costs else None,
    }  # fmt: skip


def _minutes(rows: list[dict[str, Any]], key: str) -> float:
    """A per-run time in seconds, summed over the runs that recorded it, in minutes."""
    return round(sum(r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])) / 60, 1)


def _estimate(plan: StudyPlan, s: StudySettings, ds: Dataset) -> list[cost.RunCost]:
    """Time a few steps of every configuration here, or take what its runs already finished in this folder took,
    add the classifier's first training when it is not cached, and say what the whole study will cost."""
    rounds = settle.load_rounds(plan.out) or [{n: plan.seeds for n in plan.names}]
    done = cost.finished([j for r in rounds for j in plan_jobs(plan, s, r)])
    seen = cost.observe(done, rounds, settle.load_timing(plan.out), plan.workers)
    n_train, n_test = len(ds.train_labels), len(ds.test_labels)
    costs = cost.estimate(plan.configs, len(plan.seeds), s.eval, n_train, n_test, screen=s.screen, seen=seen, workers=plan.workers)
    first = None if s.screen else cost.classifier_cost(ds)
    costs += [first] if first is not None else []
    log.info(f"study: the estimated cost of its {len(plan.names) * len(plan.seeds)} run(s) on this machine:")
    for line in cost.describe(costs, plan.workers):
        log.info(line)
    return costs


def _execute(todo: list[Job], ex: Executor, ds: Dataset, clf: Any) -> list[dict[str, Any]]:
    """Run every job on the executor; the rows in the order they finished.

    Runs another process is working on (a second study on this folder) come last: this study
    waits for them, then reads their results (or finishes a run whose process died).
    """
    rows, busy = [], []
    kwargs = {"dataset": ds, "classifier": clf} if ex.in_process else {}
    for i, (job, row) in enumerate(ex.run(run_job, todo, **kwargs), 1):
        if row.get("busy"):
            busy.append(job)
            continue
        rows.append(row)
        log.info(f"[{job.config} seed {job.seed}] done ({i}/{len(todo)})")
    for job, row in ex.run(run_job, busy, wait=True, **kwargs) if busy else ():
        rows.append(row)
        log.info(f"[{job.config} seed {job.seed}] done (finished by another process or after it)")
    return rows


def _plan(s: StudySettings, classifier: Any, data: tuple[str, str] | None) -> StudyPlan:
    """The configurations as this study trains them (unknown names and contradicting variants fail here, before any work)."""
    names = [c.strip() for c in (s.configs or study_configs()) if c.strip()]
    if len(set(names)) != len(names):
        raise ConfigError(f"--configs: a configuration is named twice in {','.join(names)}")
    if classifier is not None and (s.jobs > 1 or s.executor != "local"):
        raise ConfigError("a classifier object can only be passed to a study run in this process (jobs=1, local executor)")
    workers = min(s.jobs, len(names) * s.seeds)
    cores = os.cpu_count() or 1
    threads = s.threads if s.threads is not None else (max(1, cores // workers) if workers > 1 else 0)
    configs = {n: study_config(n, s, threads, data) for n in names}
    return StudyPlan(names, list(range(s.seeds)), configs, Path(s.out), workers, threads)
