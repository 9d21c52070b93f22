"""The seven-configuration study as one call: train, evaluate, and write ``report.md`` / ``report.html``.

Layout of the study folder ``OUT``::

    OUT/runs/<config>/      a normal run folder (checkpoints, figures) plus eval.json
    OUT/report.md           table, figures by relative path, findings
    OUT/report.html         the same, self-contained (figures embedded as data URIs)
    OUT/study.json          the table's numbers, machine-readable

Restarting a killed study continues it: a run whose eval.json matches the requested settings is
skipped, an unfinished run resumes from its newest checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..config import STUDY_EVAL, EvalConfig, RunConfig
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..evaluation.classifier import get_classifier
from ..evaluation.run import evaluate_run
from ..io import atomic_write_text
from ..models import VAE
from ..models.flops import forward_flops
from ..presets import get_config, list_configs
from ..runs.folder import RUN_MARKER, read_run_config
from ..runtime.logging import LOGGER, configure
from ..runtime.process import peak_rss_mb, set_threads
from ..training import train
from .report import write_report

log = logging.getLogger(__name__)


class _Prefix(logging.Filter):
    """Prefix each record with ``[config]`` so the interleaved lines of parallel jobs stay readable."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.tag = f"[{name}] "

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.tag):
            record.msg = self.tag + str(record.msg)
        return True


@contextmanager
def _prefixed(name: str) -> Iterator[None]:
    f = _Prefix(name)
    handlers = logging.getLogger(LOGGER).handlers
    for h in handlers:
        h.addFilter(f)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(f)


def _eval_matches(ev: dict[str, Any], epochs: int, s: EvalConfig) -> bool:
    iw = ev.get("iwae", {})
    return (
        ev.get("epoch") == epochs
        and iw.get("k") == s.k
        and iw.get("seed") == s.seed
        and iw.get("precision") == s.precision
        and ev.get("samples", {}).get("n") == s.n_samples
    )


def run_one(
    name: str, cfg_dict: dict[str, Any], run_dir: str, settings: EvalConfig, dataset: Dataset | None = None, classifier: Any = None
) -> dict[str, Any]:
    """Train (or resume) one configuration into ``run_dir`` and evaluate it; returns its table row.

    Top-level so a spawned worker process can run it.
    """
    cfg = RunConfig.from_dict(cfg_dict, source=f"study config {name}")
    path = Path(run_dir)
    if logging.getLogger(LOGGER).handlers == []:  # a spawned worker: talk like the parent
        configure("stderr")

    def say(msg: str) -> None:
        log.info(f"[{name}] {msg}")

    ev_path = path / "eval.json"
    ev = None
    if ev_path.exists():
        try:
            ev = json.loads(ev_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            ev = None
    if ev is None or not _eval_matches(ev, cfg.train.epochs, settings):
        threads = cfg.train.threads
        if (path / RUN_MARKER).exists():
            # Restarted with another --jobs: keep the run's thread count, which resume must not change.
            saved = read_run_config(path)
            cfg = cfg.replace(threads=saved.train.threads)
            with _prefixed(name):
                train(cfg, path, resume=True, progress=False, dataset=dataset)
        else:
            if path.exists():  # killed before the run was even created: nothing worth keeping
                shutil.rmtree(path)
            with _prefixed(name):
                train(cfg, path, progress=False, dataset=dataset)
        set_threads(threads)  # this job's share of the cores, even if the run was started with another
        say("evaluating")
        with _prefixed(name):
            ev = evaluate_run(path, settings, dataset=dataset, classifier=classifier)
    else:
        say("already trained and evaluated; skipped")
    return {**table_row(path, ev), "peak_rss_mb": peak_rss_mb()}  # this process's peak so far


def table_row(run_dir: Path, ev: dict[str, Any]) -> dict[str, Any]:
    """One report row from a run folder's metrics.jsonl and its eval.json."""
    history = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    seconds = sum(r["train_seconds"] for r in history)
    images = sum(r["train_seconds"] * r["images_per_second"] for r in history)
    s = ev["samples"]
    return {
        "config": ev["config"],
        "run": str(run_dir),
        "epochs": ev["epoch"],
        "parameters": ev["parameters"],
        "train_seconds": seconds,
        "images_per_second": images / seconds if seconds else float("nan"),
        "elbo": ev["elbo"],
        "recon": ev["recon"],
        "kl": ev["kl"],
        "recon_mu": ev["recon_mu"],
        "nll": ev["iwae"]["nll"],
        "nll_stderr": ev["iwae"]["stderr"],
        "k": ev["iwae"]["k"],
        "precision": ev["iwae"]["precision"],
        "active_units": ev["active_units"],
        "latent_dim": len(ev["mu_variance"]),
        "probe_accuracy": ev["probe_accuracy"],
        "coverage": s["coverage"],
        "histogram": s["histogram"],
        "entropy": s["entropy"],
        "blank_rate": s["blank_rate"],
        "frechet": s["frechet"],
        "frechet_floor": s["frechet_floor"],
        "binarized": ev["binarized"],
        "test_loss_history": [r["test_loss"] for r in history],
    }


def _cost(name: str) -> int:
    """Relative cost of training and evaluating a configuration: its forward FLOPs per image."""
    return forward_flops(VAE(get_config(name).model))["total"]


def run_study(
    configs: list[str] | None = None,
    *,
    epochs: int = 50,
    settings: EvalConfig = STUDY_EVAL,
    dataset: str | Dataset = "auto",
    data_path: str = "",
    binarize: str = "none",
    jobs: int = 1,
    out: str | Path = "study",
    classifier: Any = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``configs`` (default: all seven) and write the report; returns {"rows", "report_md", ...}.

    ``dataset`` is a name (``auto``, ``embedded``, ...) or a :class:`Dataset` object (tests, slices).
    ``jobs`` > 1 trains in that many spawned processes, splitting the cores between them.
    ``classifier`` replaces the cached digit classifier (only with ``jobs=1``). ``threads`` per
    job defaults to cores // jobs (all cores, 0, with one job).
    """
    t0 = time.perf_counter()
    names = list(configs) if configs else list_configs()
    for n in names:
        get_config(n)  # unknown names fail here, before any training
    if len(set(names)) != len(names):
        raise ConfigError(f"--configs: a configuration is named twice in {','.join(names)}")
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    if jobs > 1 and classifier is not None:
        raise ConfigError("a classifier object can only be passed with jobs=1")
    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_path or None)
    if classifier is None:
        classifier = get_classifier(ds)  # trained once here, so workers only read the cache
    cores = os.cpu_count() or 1
    workers = min(jobs, len(names))
    if threads is None:
        threads = max(1, cores // workers) if workers > 1 else 0
    changes: dict[str, Any] = {"epochs": epochs, "seed": settings.seed, "binarize": binarize, "threads": threads}
    if not isinstance(dataset, Dataset):
        changes |= {"dataset": dataset, "data_path": data_path or ""}
    jobs_args = {n: (n, get_config(n).replace(**changes).to_dict(), str(out / "runs" / n), settings) for n in names}
    log.info(
        f"study: {len(names)} configuration(s), {epochs} epochs, K={settings.k}, {settings.n_samples:,} samples, "
        f"{workers} job(s) x {threads or cores} thread(s); folder {out}"
    )
    rows: dict[str, dict[str, Any]] = {}
    if workers == 1:
        for n in names:
            rows[n] = run_one(*jobs_args[n], dataset=ds, classifier=classifier)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            # Longest first: the pool takes jobs in submission order, and a long job started last
            # would run alone while the other workers sit idle (`original` is ~4x any other).
            futures = {pool.submit(run_one, *jobs_args[n], dataset=ds): n for n in sorted(names, key=_cost, reverse=True)}
            for fut in as_completed(futures):
                rows[futures[fut]] = fut.result()
                log.info(f"[{futures[fut]}] done")
    ordered = [rows[n] for n in names]
    meta = {
        "epochs": epochs,
        "k": settings.k,
        "n_samples": settings.n_samples,
        "seed": settings.seed,
        "binarize": binarize,
        "precision": settings.precision,
        "dataset": ds.info(),
        "classifier_accuracy": getattr(classifier, "test_accuracy", float("nan")),
        "frechet_floor": getattr(classifier, "floor_frechet", float("nan")),
        "jobs": workers,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(max([peak_rss_mb(), *(r["peak_rss_mb"] for r in ordered)])),
    }
    atomic_write_text(out / "study.json", json.dumps({"meta": meta, "rows": ordered}, indent=2))
    md, page = write_report(out, ordered, meta)
    log.info(f"report: {md} and {page} ({meta['wall_seconds']:.0f} s)")
    return {"rows": ordered, "meta": meta, "report_md": md, "report_html": page}
