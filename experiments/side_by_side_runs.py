"""The side-by-side benchmark's processes: each scenario of one variant, run as a user runs the product.

Split from ``experiments/side_by_side.py`` (the command line, the printout and the JSON); see its
docstring for what each scenario and variant is and what each figure means.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine_load import IDLE_BELOW, measured, wait_idle

VARIANTS = ("shared", "before", "spin-only", "passive")
#: The spin count of the ``spin-only`` variant (libgomp's default: 300,000): the lever measured and
#: rejected (docs/performance.md, "Side by side"); 10,000 cost 6% alone, 100,000 nothing alone.
BOUNDED_SPIN = 100_000
SCENARIOS = ("train", "train+train", "train+evaluate", "study+train", "train+nice-loop", "train+nice-loop-elsewhere", "nice-study+train")
#: The nice value of the busy loop and of the niced study (the kernel's lowest priority).
LOW_PRIORITY = 19
#: One core's worth of work outside the registry, at the lowest priority.
BUSY_LOOP = f"import os\nos.nice({LOW_PRIORITY})\nwhile True:\n    pass\n"
#: Seconds between two looks at the runs' metrics files: the precision of an epoch's time stamp.
POLL_S = 0.02


def variant_env(variant: str) -> dict[str, str]:
    """The environment of the product's processes in ``variant`` (this process's, without its own cure)."""
    env = dict(os.environ)
    for k in ("MNIST_VAE_NO_SHARE", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT"):
        env.pop(k, None)  # each variant gets what it names, whatever this shell has set
    if variant == "before":
        env["MNIST_VAE_NO_SHARE"] = "1"
    elif variant == "spin-only":
        env["MNIST_VAE_NO_SHARE"] = "1"
        env["GOMP_SPINCOUNT"] = str(BOUNDED_SPIN)
    elif variant == "passive":
        env["MNIST_VAE_NO_SHARE"] = "1"
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif variant != "shared":
        raise ValueError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    return env


@dataclass
class Settings:
    """What to run: the configuration, its epochs, the data and the evaluation's size."""

    config: str = "fast-lr"
    epochs: int = 3
    precision: str = "fp32"
    data_args: list[str] = field(default_factory=lambda: ["--dataset", "embedded"])
    eval_k: int = 100
    eval_samples: int = 1000
    study_k: int = 10  # the study's NLL between its runs: short, so that it mostly trains


@dataclass
class _Proc:
    """One product process, its metrics (a run's file, or a study folder's files) and when each line appeared."""

    popen: subprocess.Popen[bytes]
    metrics: Path | None
    log: Path
    started: float
    lines: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ended: float | None = None
    run: Path | None = None  # a training's run folder
    seen: dict[Path, int] = field(default_factory=dict)

    def poll(self) -> bool:
        """Stamp new metrics lines; True while the process runs."""
        if self.metrics is not None:
            files = sorted(self.metrics.glob("**/metrics.jsonl")) if self.metrics.is_dir() else [self.metrics]
            now = time.monotonic()
            for path in files:
                try:
                    text = path.read_text()
                except OSError:
                    continue
                complete = text.splitlines()[: text.count("\n")]
                for line in complete[self.seen.get(path, 0) :]:
                    self.lines.append((now, json.loads(line)))
                self.seen[path] = len(complete)
        if self.ended is None and self.popen.poll() is not None:
            self.ended = time.monotonic()
        return self.ended is None

    def epochs(self) -> list[tuple[float, float, float]]:
        """(start bound, end bound, img/s) of each epoch: it trained between the previous line (or the
        process's start) and its own line."""
        out, before = [], self.started
        for t, rec in self.lines:
            out.append((before, t, float(rec["images_per_second"])))
            before = t
        return out

    def busy(self) -> tuple[float, float] | None:
        """From the start of its first epoch's training to its last line (None before an epoch ended)."""
        if not self.lines:
            return None
        t0, rec = self.lines[0]
        return t0 - float(rec["train_seconds"]), self.lines[-1][0]

    def stop(self) -> None:
        if self.popen.poll() is None:
            # A partner no longer needed: nothing of it is kept. Its whole process group, so that a
            # study's workers go with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        if self.ended is None:
            self.ended = time.monotonic()

    def check(self, what: str) -> None:
        if self.popen.returncode not in (0, None, -signal.SIGKILL):
            raise RuntimeError(f"{what} failed (exit {self.popen.returncode}):\n{self.log.read_text()[-3000:]}")


class SideBySide:
    """Runs the scenarios of one variant in a scratch folder."""

    def __init__(self, settings: Settings, variant: str, tmp: Path) -> None:
        self.s, self.variant, self.tmp = settings, variant, tmp
        self.env = variant_env(variant)
        self.n = 0

    def plan(self, scenarios: list[str]) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
        """The measurements of ``scenarios``, in the order they run: train alone first, evaluate alone
        (for train+evaluate) next, then each scenario."""
        steps = {
            "evaluate": self.alone_evaluate,
            "train+train": self.train_train,
            "train+evaluate": self.train_evaluate,
            "study+train": self.study_train,
            "train+nice-loop": self.train_nice_loop,
            "train+nice-loop-elsewhere": self.train_nice_loop_elsewhere,
            "nice-study+train": self.nice_study_train,
        }
        chosen = [n for n in steps if (n in scenarios if n != "evaluate" else "train+evaluate" in scenarios)]
        return [("train", self.alone_train), *((n, steps[n]) for n in chosen)]

    def _start(self, args: list[str], metrics: Path | None, nice: int = 0) -> _Proc:
        self.n += 1
        log = self.tmp / f"{self.variant}-{self.n}.log"
        with open(log, "wb") as f:
            popen = subprocess.Popen(
                [sys.executable, "-m", "mnist_vae", *args],
                env=self.env,
                stdout=f,
                stderr=subprocess.STDOUT,
                preexec_fn=_group_and_nice(nice),
            )
        return _Proc(popen, metrics, log, time.monotonic())

    def train(self, epochs: int) -> _Proc:
        run = self.tmp / f"{self.variant}-run{self.n + 1}"
        args = ["train", "--config", self.s.config, "--epochs", str(epochs), "--precision", self.s.precision, "--device", "cpu"]
        p = self._start([*args, *self.s.data_args, "--no-progress", "--out", str(run)], run / "metrics.jsonl")
        p.run = run
        return p

    def evaluate(self, run: Path) -> _Proc:
        args = ["evaluate", str(run), "--k", str(self.s.eval_k), "--samples", str(self.s.eval_samples), "--device", "cpu", "--no-progress"]
        return self._start(args, None)

    def study(self, folder: Path, nice: int = 0) -> _Proc:
        """A study of the configuration over many seeds (one job, the screen's short evaluation): stopped when no longer needed."""
        args = ["study", "--configs", self.s.config, "--seeds", "200", "--max-seeds", "200", "--epochs", str(self.s.epochs), "--jobs", "1"]
        args += ["--k", str(self.s.study_k), "--screen", "--precision", "fp32", "--train-precision", self.s.precision, "--device", "cpu"]
        return self._start([*args, *self.s.data_args, "--out", str(folder)], folder, nice)

    @staticmethod
    def _wait(procs: list[_Proc], until: list[_Proc] | None = None, first_epoch_of: _Proc | None = None) -> None:
        """Poll until every process of ``until`` (default: all) ended, or ``first_epoch_of`` wrote its first line."""
        until = procs if until is None else until
        while True:
            for p in procs:
                p.poll()
            if first_epoch_of is not None and (first_epoch_of.lines or first_epoch_of.ended is not None):
                return
            if first_epoch_of is None and all(p.ended is not None for p in until):
                return
            time.sleep(POLL_S)

    def _rate(self, p: _Proc, inside: tuple[float, float] | None) -> tuple[float, int]:
        """Median img/s of the epochs that lay inside ``inside`` (all epochs but the first when None),
        and how many: negative when none lay entirely inside and those that overlapped it were taken,
        0 when none even overlapped and all were taken (epochs too short for the time stamps: a tiny run)."""
        eps = p.epochs()
        if inside is None:
            chosen = [r for _, _, r in eps[1:]] or [r for _, _, r in eps]
            return statistics.median(chosen), len(chosen)
        chosen = [r for a, b, r in eps if a >= inside[0] and b <= inside[1]]
        if chosen:
            return statistics.median(chosen), len(chosen)
        partly = [r for (_, b, r), (_, rec) in zip(eps, p.lines) if b - float(rec["train_seconds"]) < inside[1] and b > inside[0]]
        if partly:
            return statistics.median(partly), -len(partly)
        return statistics.median(r for _, _, r in eps), 0

    def alone_train(self) -> dict[str, Any]:
        p = self.train(self.s.epochs)
        self._wait([p])
        p.check("train")
        rate, n = self._rate(p, None)
        assert p.run is not None
        self.trained: Path = p.run
        return {"train_img_s": [rate], "epochs_counted": [n]}

    def alone_evaluate(self) -> dict[str, Any]:
        warm = self.evaluate(self.trained)  # the first evaluation may train and cache the digit classifier
        self._wait([warm])
        warm.check("evaluate")
        p = self.evaluate(self.trained)
        self._wait([p])
        p.check("evaluate")
        return {"eval_s": [_eval_seconds(self.trained)]}

    def train_train(self) -> dict[str, Any]:
        a, b = self.train(self.s.epochs), self.train(self.s.epochs)
        self._wait([a, b])
        a.check("train")
        b.check("train")
        ra, na = self._rate(a, b.busy())
        rb, nb = self._rate(b, a.busy())
        return {"train_img_s": [ra, rb], "epochs_counted": [na, nb]}

    def train_evaluate(self) -> dict[str, Any]:
        # The training starts first and outlasts the evaluation (it is stopped after it): every
        # moment of the evaluation has a training beside it.
        t = self.train(10_000)
        try:
            self._wait([t], first_epoch_of=t)
            t.check("train")
            e = self.evaluate(self.trained)
            self._wait([t, e], until=[e])
            e.check("evaluate")
            end = e.ended or time.monotonic()
            seconds = _eval_seconds(self.trained)
            window = (end - seconds, end)
            t.poll()
        finally:
            t.stop()
        rate, n = self._rate(t, window)
        return {"train_img_s": [rate], "epochs_counted": [n], "eval_s": [seconds]}

    def train_nice_loop(self, elsewhere: bool = False) -> dict[str, Any]:
        # The loop runs before and during the whole training; it is this benchmark's child, so its CPU
        # time is not counted as load from outside the benchmark.
        loop = subprocess.Popen(
            [sys.executable, "-c", BUSY_LOOP], start_new_session=elsewhere, preexec_fn=None if elsewhere else os.setpgrp
        )
        try:
            time.sleep(0.5)  # running before the training looks at the machine
            t = self.train(self.s.epochs)
            self._wait([t])
            t.check("train")
        finally:
            loop.kill()
            loop.wait()
        rate, n = self._rate(t, None)
        return {"train_img_s": [rate], "epochs_counted": [n]}

    def train_nice_loop_elsewhere(self) -> dict[str, Any]:
        return self.train_nice_loop(elsewhere=True)

    def nice_study_train(self) -> dict[str, Any]:
        return self.study_train(nice=LOW_PRIORITY)

    def study_train(self, nice: int = 0) -> dict[str, Any]:
        # The study starts first and outlasts the training (it is stopped after it).
        st = self.study(self.tmp / f"{self.variant}-study{self.n + 1}", nice)
        try:
            self._wait([st], first_epoch_of=st)
            st.check("study")
            t = self.train(self.s.epochs)
            self._wait([st, t], until=[t])
            t.check("train")
            st.poll()
        finally:
            st.stop()
        window = t.busy()
        rate, n = self._rate(t, st.busy())
        srate, sn = self._rate(st, window)
        return {"train_img_s": [rate], "epochs_counted": [n, sn], "study_img_s": [srate]}


def _group_and_nice(nice: int) -> Any:
    """What a product process does before it starts: a process group of its own (stopped with its
    workers), in the benchmark's session, at ``nice``."""

    def before() -> None:
        os.setpgrp()
        if nice:
            os.nice(nice)

    return before


def _eval_seconds(run: Path) -> float:
    return float(json.loads((run / "eval.json").read_text())["eval_seconds"])


def run(
    settings: Settings, variants: list[str], scenarios: list[str], rounds: int = 1, wait_s: float = 600, retries: int = 2
) -> dict[str, Any]:
    """Every scenario of every variant, ``rounds`` times (variants alternate within a round).

    Before each measurement it waits (up to ``wait_s``) for an idle machine; a measurement during
    which other processes kept more than IDLE_BELOW cores busy is made again (up to ``retries``
    times), and the load from outside is recorded with each.
    """
    results: dict[str, dict[str, dict[str, Any]]] = {v: {} for v in variants}
    with tempfile.TemporaryDirectory(prefix="mnist-vae-sbs-") as tmp:
        for r in range(rounds):
            for v in variants:
                folder = Path(tmp) / f"r{r}"
                folder.mkdir(exist_ok=True)
                sbs = SideBySide(settings, v, folder)
                for name, fn in sbs.plan(scenarios):
                    for attempt in range(retries + 1):
                        if wait_s > 0:
                            wait_idle(wait_s)
                        print(f"  round {r + 1}, {v}: {name} ...", file=sys.stderr, flush=True)
                        out, outside = measured(fn)
                        if outside is None or outside < IDLE_BELOW or attempt == retries:
                            break
                        print(f"    other processes kept {outside:.2f} cores busy meanwhile: measured again", file=sys.stderr, flush=True)
                    _merge(results[v].setdefault(name, {}), {**out, "outside_cores": outside})
    return {"results": results}


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, values in new.items():
        into.setdefault(k, []).append(values)
