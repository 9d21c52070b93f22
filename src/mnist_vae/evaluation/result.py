"""What ``evaluate_run`` measures, typed: :class:`EvalResult`, written to and read from ``RUN/eval.json`` here only.

The file's keys are the fields' names, in the fields' order; a measurement a screen leaves out
(``screen = True``) is absent from the file and None here. Files written before this type existed
read back the same; a key this type does not know is kept in ``extra`` and written back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..io import atomic_write_text

EVAL_FILE = "eval.json"


@dataclass
class EvalResult:
    """One run's evaluation: the test ELBO terms, the importance-weighted NLL, the latent space and the samples."""

    run: str
    config: str
    epoch: int
    dataset: dict[str, Any]
    binarized: bool
    binarize: str
    n_test: int
    device: str
    elbo: float
    recon: float
    kl: float
    recon_mu: float
    kl_per_dim: list[float]
    iwae: dict[str, Any]  # nll, stderr, k, seed, precision, seconds
    active_units: int
    mu_variance: list[float]
    parameters: int
    screen: bool | None = None  # True: an ablation screen, which measures none of what follows
    probe_accuracy: float | None = None
    samples: dict[str, Any] | None = None  # n, seed, coverage, entropy, blank_rate, frechet, frechet_floor, histogram
    recon_accuracy: float | None = None
    midpoint_readable: float | None = None
    classifier_accuracy: float | None = None
    eval_seconds: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)  # keys of another version's file, kept as they were

    def to_dict(self) -> dict[str, Any]:
        """The plain dict ``eval.json`` holds (what a screen did not measure is left out)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra" and getattr(self, f.name) is not None}
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        """The result a dict of ``eval.json`` holds; TypeError if one of the measurements every evaluation makes is missing."""
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in names}, extra={k: v for k, v in d.items() if k not in names})

    def write(self, run_dir: str | Path) -> None:
        """Write ``RUN/eval.json`` atomically."""
        atomic_write_text(Path(run_dir) / EVAL_FILE, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, run_dir: str | Path) -> EvalResult | None:
        """``RUN/eval.json``, or None if there is none or it does not hold an evaluation."""
        try:
            d = json.loads((Path(run_dir) / EVAL_FILE).read_text(encoding="utf-8"))
            return cls.from_dict(d) if isinstance(d, dict) else None
        except (OSError, json.JSONDecodeError, TypeError):
            return None
