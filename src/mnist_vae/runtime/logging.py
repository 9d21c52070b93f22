"""Messages and progress: the ``mnist_vae`` logger, rank 0 only, and progress bars that suit the output.

Library modules log through ``logging.getLogger(__name__)``; nothing is printed unless the program
configures a handler (the CLI does, with :func:`configure`) -- except warnings, which Python's
last-resort handler shows on stderr. Under torchrun only rank 0 talks: :func:`set_rank` raises the
level of the package's logger on the other ranks.

Progress bars are interface, not log records: :func:`progress` gives a tqdm bar on a terminal, and
where stderr is a file or pipe a plain line at most every :data:`PLAIN_INTERVAL_S` seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Protocol

LOGGER = "mnist_vae"
#: Seconds between progress lines when stderr is not a terminal.
PLAIN_INTERVAL_S = 30.0


class _CurrentStream(logging.StreamHandler):
    """Info lines to ``sys.stdout`` or ``sys.stderr`` (``which``), warnings and errors always to stderr.

    The stream is looked up at each record, so redirections made after the handler is installed
    (tests, ``contextlib.redirect_stdout``) are honoured.
    """

    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which
        self._level = logging.INFO

    @property
    def stream(self) -> Any:
        return sys.stderr if self._level >= logging.WARNING else getattr(sys, self.which)

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        self._level = record.levelno
        super().emit(record)


class _PlainFormatter(logging.Formatter):
    """The message alone; warnings and errors get a ``warning:`` / ``error:`` prefix."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"warning: {msg}"
        return msg


def configure(stream: str = "stdout", level: int = logging.INFO) -> None:
    """Show the package's messages as plain lines on ``stream`` ("stdout" or "stderr"); replaces an earlier call's handler."""
    log = logging.getLogger(LOGGER)
    for h in list(log.handlers):
        if isinstance(h, _CurrentStream):
            log.removeHandler(h)
    handler = _CurrentStream(stream)
    handler.setFormatter(_PlainFormatter())
    log.addHandler(handler)
    log.setLevel(level)


_rank = {"rank": 0}


def set_rank(rank: int) -> None:
    """Record this process's rank; on processes other than rank 0 silence all but errors, for good."""
    _rank["rank"] = rank
    if rank != 0:
        logging.getLogger(LOGGER).setLevel(logging.ERROR)


def is_main_process() -> bool:
    """True unless :func:`set_rank` recorded a rank other than 0 (data-parallel training)."""
    return _rank["rank"] == 0


class Progress(Protocol):
    """What the loops call on a progress display."""

    n: int  # units done so far

    def update(self, n: int) -> None: ...

    def set_postfix(self, **values: Any) -> None: ...

    def close(self) -> None: ...


class _PlainProgress:
    """A line on stderr at most every ``interval`` seconds: for logs and pipes, where a bar would flood."""

    def __init__(self, total: int, desc: str, unit: str, interval: float, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n, self.start, self.last, self.postfix = initial, time.monotonic(), time.monotonic(), ""
        self.first = initial

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval and self.n < self.total:
            self.last = now
            elapsed = now - self.start
            done = self.n - self.first
            left = (self.total - self.n) * elapsed / done if done else float("nan")
            share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            print(
                f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{share}, {elapsed:.0f} s elapsed, "
                f"about {left:.0f} s left{self.postfix}",
                file=sys.stderr,
                flush=True,
            )

    def set_postfix(self, **values: Any) -> None:
        self.postfix = "; " + ", ".join(f"{k} {v}" for k, v in values.items()) if values else ""

    def close(self) -> None:
        pass


def progress(
    total: int, desc: str, unit: str = "img", enabled: bool = True, initial: int = 0, interval: float = PLAIN_INTERVAL_S
) -> Progress | None:
    """A tqdm bar on a terminal, a periodic plain line otherwise, or None when not ``enabled``."""
    if not enabled:
        return None
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.5,
            file=sys.stderr,
            initial=initial,
        )
    return _PlainProgress(total, desc, unit, interval, initial)
