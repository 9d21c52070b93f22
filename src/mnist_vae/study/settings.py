"""What a study is run with: one frozen dataclass, its defaults, and how it meets each configuration.

A study sets a few training fields on every configuration (epochs, binarisation, device, training
precision, threads, data). A field written in a variant, ``NAME[key=value]``, wins over the
study-wide default; if it contradicts a study flag the user gave explicitly, the study refuses at
once with one line naming both. Each run records what it resolved to (``config.toml``), and the
report shows it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Binarize, EvalConfig, Precision, RunConfig, load_toml
from ..errors import ConfigError
from ..fields import described
from ..presets import get_config
from .executors import EXECUTORS

#: The study's evaluation: the NLL's decoder in bf16 where the hardware computes it natively, fp32
#: elsewhere; K = 200 importance samples, which on the same runs gave the same ranking and verdicts
#: as K = 1000 (docs/evaluation.md has the comparison and the cost of each). `mnist-vae evaluate`
#: keeps K = 1000 for headline numbers.
STUDY_EVAL = EvalConfig(k=200, precision="auto")
#: The study trains in bf16 where the hardware computes it natively (auto), fp32 elsewhere; the
#: paired-seed evidence that this leaves the NLL unchanged is in docs/performance.md.
#: `mnist-vae train` keeps fp32 as its default.
STUDY_TRAIN_PRECISION = "auto"
STUDY_EPOCHS = 50
STUDY_BINARIZE = "none"
STUDY_DEVICE = "cpu"

#: The StudySettings fields that are command-line options of the same name, each made from the field.
FIELD_FLAGS = ("seeds", "epochs", "binarize", "jobs", "threads", "executor", "scheduler", "device", "train_precision", "out", "screen",
               "until_settled", "max_seeds")  # fmt: skip
#: The training fields a study sets on every configuration, with the StudySettings field (the
#: command-line flag) each comes from.
STUDY_FIELDS = {"epochs": "epochs", "binarize": "binarize", "device": "device", "precision": "train_precision"}
FLAGS = {setting: "--" + setting.replace("_", "-") for setting in STUDY_FIELDS.values()}


@dataclass(frozen=True)
class StudySettings:
    """A study's settings. ``None`` in ``epochs``, ``binarize``, ``device`` and ``train_precision``
    means "not given": each configuration then gets the study default unless its variant sets the field.

    ``screen``: evaluate only what an ablation screen needs (NLL, test ELBO, active units), without
    the digit classifier, its samples and the probe. ``until_settled``: after the first round, add
    seeds where claims are open, up to ``max_seeds``, within ``budget_s`` (study/settle.py).
    """

    configs: tuple[str, ...] = ()  # () = the default set
    seeds: int = described(3, "training seeds per configuration (0..N-1); findings are paired by seed")
    epochs: int | None = described(None, f"epochs per configuration (study default: {STUDY_EPOCHS})")
    binarize: Binarize | None = described(None, f"pixel binarization (study default: {STUDY_BINARIZE})")
    device: str | None = described(None, f"train and evaluate on: cpu, cuda, cuda:N, mps or auto (study default: {STUDY_DEVICE})")
    train_precision: Precision | None = described(
        None,
        f"training precision of every configuration that does not set its own (study default: {STUDY_TRAIN_PRECISION}: bf16 where "
        "the hardware computes it natively, fp32 elsewhere; docs/performance.md has the paired-seed evidence behind this default)",
    )
    eval: EvalConfig = STUDY_EVAL
    dataset: str = "auto"
    data_path: str = ""
    jobs: int = described(1, "runs trained in parallel on this machine (cores are split between them)")
    threads: int | None = described(None, "CPU threads per job (study default: cores // jobs)")
    executor: str = described("local", "local processes, or a Dask cluster (needs mnist-vae[dask])", choices=EXECUTORS)
    scheduler: str | None = described(None, "the Dask scheduler's address, tcp://HOST:8786 (with --executor dask)")
    out: Path = described(Path("study"), "study folder (every Dask worker must reach it)")
    screen: bool = described(
        False, "an ablation screen: evaluate only the NLL, test ELBO and active units (no classifier, samples or probe)"
    )
    until_settled: bool = described(
        False,
        "after the first --seeds, add seeds in rounds to the configurations of claims not yet settled family-wise, "
        "cheapest first, until every claim is settled, needs more than --max-seeds, or --budget would be overrun; "
        "verdicts use anytime-valid intervals that stay valid however often they are looked at (docs/evaluation.md)",
    )
    max_seeds: int = described(20, "with --until-settled: at most this many seeds per configuration")
    budget_s: float | None = None  # stop before a round that would end past this many seconds

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "configs", tuple(self.configs))
        if self.seeds < 1:
            raise ConfigError(f"--seeds: must be >= 1, got {self.seeds}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs: must be >= 1, got {self.jobs}")
        if self.max_seeds < self.seeds:
            raise ConfigError(f"--max-seeds: must be at least --seeds ({self.seeds}), got {self.max_seeds}")
        if self.budget_s is not None and not self.until_settled:
            raise ConfigError("--budget: only with --until-settled")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"--epochs: must be >= 1, got {self.epochs}")

    def replace(self, **changes: Any) -> StudySettings:
        """A copy with fields changed."""
        return dataclasses.replace(self, **changes)

    def defaults(self) -> dict[str, Any]:
        """The training fields set on every configuration that does not set them itself."""
        return {
            "epochs": self.epochs if self.epochs is not None else STUDY_EPOCHS,
            "binarize": self.binarize if self.binarize is not None else STUDY_BINARIZE,
            "device": self.device if self.device is not None else STUDY_DEVICE,
            "precision": self.train_precision if self.train_precision is not None else STUDY_TRAIN_PRECISION,
        }

    def explicit(self) -> dict[str, Any]:
        """The training fields whose study flag the user gave (config field -> value)."""
        out = {}
        for cfg_field, setting in STUDY_FIELDS.items():
            value = getattr(self, setting)
            if value is not None:
                out[cfg_field] = value
        return out


_SPEC = re.compile(r"\s*([\w./-]+)\s*(?:\[(.*)\])?\s*")  # NAME: a preset, or a path to a .toml file


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """``NAME[key=value,...]`` -> (NAME, ["key=value", ...])."""
    m = _SPEC.fullmatch(spec)
    if not m:
        raise ConfigError(f"--configs: {spec!r} is not NAME or NAME[key=value,...]")
    return m.group(1), [item.strip() for item in (m.group(2) or "").split(",") if item.strip()]


def config_for(spec: str) -> RunConfig:
    """A configuration by name, or ``NAME[key=value,...]``: a preset with fields changed (its name is the spec).

    NAME may also be a TOML file (``path/to/my.toml``, as ``train --config`` takes it): a configuration
    of one's own, e.g. one with a plugin's encoder (docs/plugins.md).
    """
    name, changes = parse_spec(spec)
    cfg = load_toml(name) if name.endswith(".toml") else get_config(name)
    if changes:
        cfg = cfg.override(changes)
    return cfg.replace(name=spec.strip())


def variant_fields(spec: str) -> set[str]:
    """The field names a spec's brackets set (``model.`` / ``train.`` prefixes dropped)."""
    return {item.split("=", 1)[0].strip().rpartition(".")[2] for item in parse_spec(spec)[1]}


def study_config(spec: str, settings: StudySettings, threads: int, data: tuple[str, str] | None) -> RunConfig:
    """The configuration ``spec`` as this study trains it: the study's fields, except where the variant sets them.

    A variant field that contradicts a flag the user gave is refused with one line naming both.
    """
    cfg = config_for(spec)
    own = variant_fields(spec)
    for cfg_field, value in settings.explicit().items():
        if cfg_field in own and getattr(cfg.train, cfg_field) != value:
            flag = FLAGS[STUDY_FIELDS[cfg_field]]
            raise ConfigError(
                f"--configs: {spec} sets {cfg_field} = {getattr(cfg.train, cfg_field)!r}, but {flag} {value} was given "
                f"for the whole study; drop one of them"
            )
    if data is not None and own & {"dataset", "data_path"}:
        raise ConfigError(f"--configs: {spec} sets the dataset; a study compares every configuration on one dataset (--dataset)")
    changes = {k: v for k, v in settings.defaults().items() if k not in own}
    if "threads" not in own:
        changes["threads"] = threads
    if data is not None:
        changes |= {"dataset": data[0], "data_path": data[1]}
    return cfg.replace(**changes)
