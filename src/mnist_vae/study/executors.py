"""Where a study's runs execute: local processes, or a Dask cluster (``--executor dask``).

An executor takes the top-level function :func:`~mnist_vae.study.jobs.run_job` and the list of
jobs, and yields ``(job, row)`` as runs finish, in any order. Every job is independent and resumes
from its own run folder, so an executor may run a job again (a worker died): the rerun continues
from the run's newest checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Protocol

from ..errors import ConfigError

EXECUTORS = ("local", "dask")


class Executor(Protocol):
    """Runs jobs; ``in_process`` tells whether objects (a dataset, a classifier) can be handed to them as they are."""

    in_process: bool

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

    def run(self, fn: Callable[..., dict[str, Any]], jobs: Sequence[Any], **kwargs: Any) -> Iterator[tuple[Any, dict[str, Any]]]: ...


class LocalExecutor:
    """``workers`` processes on this machine (spawned, so each starts clean); one worker runs in this process."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.in_process = workers == 1

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, fn: Callable[..., dict[str, Any]], jobs: Sequence[Any], **kwargs: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
        if self.in_process:
            for job in jobs:
                yield job, fn(job, **kwargs)
            return
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn")) as pool:
            # The pool takes jobs in submission order, which is longest first: a long job started
            # last would run alone while the other workers sit idle.
            futures = {pool.submit(fn, job, **kwargs): job for job in jobs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()


def make_executor(kind: str, workers: int, scheduler: str | None = None) -> Executor:
    """The executor ``kind`` names (see :data:`EXECUTORS`)."""
    if kind == "local":
        if scheduler:
            raise ConfigError("--scheduler: only with --executor dask")
        return LocalExecutor(workers)
    if kind == "dask":
        from .dask_executor import DaskExecutor

        return DaskExecutor(scheduler)
    raise ConfigError(f"--executor: {kind!r} is not one of {', '.join(EXECUTORS)}")
