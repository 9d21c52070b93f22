"""A study's runs on a Dask distributed cluster: ``mnist-vae study --executor dask --scheduler tcp://HOST:8786``.

Each (configuration, seed) job becomes one Dask task that calls the study's ``run_job`` on a
worker. Workers load the dataset themselves (by name or path) and read the digit classifier from
the on-disk cache, which the study fills before it submits anything; every worker must reach the
study folder at the same absolute path (a shared file system), and its data path if one is given.

A worker that dies mid-run loses nothing but time: Dask gives its task to another worker (up to
the scheduler's ``distributed.scheduler.allowed-failures`` times), this executor submits it again
when Dask gives up (:attr:`DaskExecutor.resubmits` more times), and ``run_job`` resumes the run
from its newest checkpoint, bitwise as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, MnistVaeError

log = logging.getLogger(__name__)

INSTALL = "pip install 'mnist-vae[dask]'"


class DaskExecutor:
    """Runs jobs as tasks of the Dask scheduler at ``scheduler`` (``None``: Dask's ``scheduler-address`` setting).

    ``timeout``: seconds to wait for the scheduler to answer. ``resubmits``: how many times a job
    is submitted again after Dask gave it up because the workers running it died (``KilledWorker``).
    """

    in_process = False  # workers are other processes, often on other machines: jobs carry names and paths only

    def __init__(self, scheduler: str | None, *, timeout: float = 10.0, resubmits: int = 2) -> None:
        try:
            import dask
            import distributed  # noqa: F401
        except ImportError:
            raise ConfigError(f"--executor dask needs the dask and distributed packages, which are not installed: {INSTALL}") from None
        address = scheduler or dask.config.get("scheduler-address", None)
        if not address:
            raise ConfigError("--executor dask needs --scheduler tcp://HOST:8786, the address of a running Dask scheduler")
        self.scheduler = str(address)
        self.timeout = timeout
        self.resubmits = resubmits
        self.client: Any = None
        self._pending: dict[Any, tuple[Any, int]] = {}  # future -> (job as given, submissions so far - 1)
        self._probe()  # a bad address fails here, before the study does any work

    def __enter__(self) -> DaskExecutor:
        from distributed import Client

        try:
            self.client = Client(self.scheduler, timeout=self.timeout, set_as_default=False)
        except (OSError, ValueError) as exc:  # something listens there, but not a Dask scheduler
            raise ConfigError(f"--scheduler {self.scheduler}: no Dask scheduler answers there ({_line(exc)})") from None
        try:
            self._check_workers()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _probe(self) -> None:
        """A plain connection first: a ``Client`` that fails to start is finalised later, at an arbitrary moment, and can hang."""
        from distributed.comm import get_address_host_port

        try:
            host, port = get_address_host_port(self.scheduler)
        except ValueError as exc:
            raise ConfigError(
                f"--scheduler {self.scheduler}: not a Dask scheduler's address ({_line(exc)}); give tcp://HOST:8786"
            ) from None
        try:
            socket.create_connection((host, port), timeout=self.timeout).close()
        except OSError as exc:
            raise ConfigError(
                f"--scheduler {self.scheduler}: no Dask scheduler answers there ({_line(exc)}); "
                f"start one with `dask scheduler` or check the address"
            ) from None

    def __exit__(self, *exc: object) -> None:
        if self.client is None:
            return
        try:
            if self._pending:  # the study stopped early: queued runs are dropped, a running one finishes on its worker
                log.warning(f"{len(self._pending)} run(s) left on the Dask cluster are released; runs already started finish there")
                self.client.cancel(list(self._pending))
                self._pending.clear()
        finally:
            self.client.close()
            self.client = None

    def _check_workers(self) -> None:
        """Log the cluster; refuse workers that cannot import this package; warn about mismatches that break bitwise equality."""
        nthreads: dict[str, int] = self.client.nthreads()
        log.info(f"Dask scheduler {self.scheduler}: {len(nthreads)} worker(s), {sum(nthreads.values())} thread(s)")
        if not nthreads:
            log.warning("no Dask worker is connected yet; the runs wait until workers join")
            return
        crowded = sorted(a for a, n in nthreads.items() if n > 1)
        if crowded:
            log.warning(
                f"{len(crowded)} Dask worker(s) run several tasks at once (e.g. {crowded[0]}); runs in one process share "
                f"torch's threads and the log: start workers with `dask worker --nthreads 1`"
            )
        try:
            versions: dict[str, dict[str, str]] = self.client.run(_versions)
        except Exception as exc:
            raise ConfigError(
                f"Dask workers of {self.scheduler} cannot run mnist-vae ({_line(exc)}); install the same mnist-vae and torch on every worker"
            ) from None
        here = _versions()
        for address, theirs in sorted(versions.items()):
            if theirs != here:
                log.warning(f"Dask worker {address} has {theirs}, this machine {here}: its runs may not match bitwise")

    def run(self, fn: Callable[..., dict[str, Any]], jobs: Sequence[Any], **kwargs: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
        """Submit every job, in order of priority (first = highest), and yield ``(job, row)`` as they finish."""
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        token = uuid.uuid4().hex[:8]  # a study's keys differ from any other's on a shared scheduler
        _warn_relative(jobs)

        def submit(job: Any, attempt: int, priority: int) -> Any:
            key = f"mnist-vae-{getattr(job, 'config', 'job')}-seed{getattr(job, 'seed', '')}-{token}"
            key += f"-again{attempt}" if attempt else ""
            fut = self.client.submit(fn, _absolute(job), key=key, pure=False, priority=priority, **kwargs)
            self._pending[fut] = (job, attempt)
            return fut

        futures = [submit(job, 0, len(jobs) - i) for i, job in enumerate(jobs)]
        log.info(f"{len(futures)} run(s) submitted to the Dask scheduler {self.scheduler}")
        done = as_completed(futures, loop=self.client.loop)  # this client, not a global default one
        for fut in done:
            job, attempt = self._pending.pop(fut)
            tag = f"{getattr(job, 'config', job)} seed {getattr(job, 'seed', '?')}"
            if fut.status == "error" and isinstance(fut.exception(), KilledWorker):
                if attempt >= self.resubmits:
                    raise MnistVaeError(f"[{tag}] lost with its Dask worker too often ({_line(fut.exception())}); the study stops")
                log.warning(f"[{tag}] Dask gave it up after its workers died; submitted again, it resumes from its newest checkpoint")
                done.add(submit(job, attempt + 1, len(jobs)))
                continue
            if fut.status == "cancelled":
                raise MnistVaeError(
                    f"[{tag}] cancelled on the Dask cluster at {self.scheduler} (scheduler lost or restarted?); run the study again to continue it"
                )
            row = fut.result()  # a job's own error is raised here, as with local processes
            fut.release()
            if "run" in row and isinstance(getattr(job, "run_dir", None), str):
                row["run"] = str(Path(job.run_dir))  # as given, so rows match a local study's
            yield job, row


def _absolute(job: Any) -> Any:
    """The job with an absolute run folder: a worker's working directory is not this process's."""
    run_dir = getattr(job, "run_dir", None)
    if dataclasses.is_dataclass(job) and not isinstance(job, type) and isinstance(run_dir, str):
        return dataclasses.replace(job, run_dir=os.path.abspath(run_dir))
    return job


def _warn_relative(jobs: Sequence[Any]) -> None:
    """A relative data path is resolved by each worker from its own working directory: say so once."""
    for job in jobs:
        cfg = getattr(job, "cfg", None)
        path = cfg.get("train", {}).get("data_path") if isinstance(cfg, dict) else None
        if path and not os.path.isabs(path):
            log.warning(f"--data-path {path} is relative: each Dask worker looks for it from its own working directory")
            return


def _versions() -> dict[str, str]:
    """This process's mnist-vae and torch versions (run on every worker by :meth:`DaskExecutor._check_workers`)."""
    import torch

    from .._version import __version__

    return {"mnist-vae": __version__, "torch": str(torch.__version__)}


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
