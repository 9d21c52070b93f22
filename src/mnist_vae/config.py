"""Typed, validated configuration: the model's architecture and the training run.

A run is described by one :class:`RunConfig` (``name`` + :class:`ModelConfig` + :class:`TrainConfig`).
Configs round-trip through plain dicts and TOML, are validated when built, and every error names
the field at fault. Field names are unique across the two sections, so ``--set latent_dim=2`` and
``--set model.latent_dim=2`` both work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import ConfigError
from .fields import (
    Options,
    build,
    check_choice,
    check_positive,
    coerce,
    described,
    field_names,
    plain,
    toml_key,
    toml_value,
)
from .kinds import BUILTIN, DEFAULT_KINDS, LEGACY, ConvOptions, LSTMOptions, migrate
from .kinds import IMAGE_SIZE as IMAGE_SIZE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The choice types; every list of valid names (validation, the CLI's choices) is derived from these.
Binarize = Literal["none", "static", "dynamic"]
LrSchedule = Literal["none", "cosine", "onecycle"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
DatasetName = Literal["auto", "embedded", "mnist", "fashion-mnist"]
EvalPrecision = Literal["auto", "fp32", "bf16"]

BINARIZE_MODES: tuple[str, ...] = get_args(Binarize)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
PRECISIONS: tuple[str, ...] = get_args(Precision)
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
EVAL_PRECISIONS: tuple[str, ...] = get_args(EvalPrecision)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the VAE: an encoder kind and its options, the latent size, a decoder kind and its options.

    Every kind is configured the same way, by its ``[model.encoder_options]`` /
    ``[model.decoder_options]``: the built-in ``lstm`` and ``mlp`` encoders and the ``conv`` decoder
    by :class:`~mnist_vae.kinds.LSTMOptions`, :class:`~mnist_vae.kinds.MLPOptions` and
    :class:`~mnist_vae.kinds.ConvOptions` (checked here, when the config is built), a plugin's kind
    by its own dataclass (checked by the model factory; docs/plugins.md).
    """

    encoder: str = DEFAULT_KINDS["encoder"]
    encoder_options: Any = field(default_factory=LSTMOptions)
    latent_dim: int = 16
    decoder: str = DEFAULT_KINDS["decoder"]
    decoder_options: Any = field(default_factory=ConvOptions)

    def __post_init__(self) -> None:
        for role in ("encoder", "decoder"):
            kind, given = getattr(self, role), getattr(self, f"{role}_options")
            if not isinstance(kind, str):  # the kind and a plugin's options are the model factory's to check
                raise ConfigError(f"{role}: expected the name of a kind, got {kind!r}")
            object.__setattr__(self, f"{role}_options", _options(role, kind, given))
        check_positive("latent_dim", self.latent_dim)


def _options(role: str, kind: str, given: Any) -> Any:
    """``given`` as ``kind``'s options: a built-in kind's dataclass (checked), or a plugin's table (:class:`Options`).

    A built-in kind's options left at their defaults when the kind changes (``cfg.replace(encoder="mlp")``)
    become the new kind's defaults."""
    cls = BUILTIN[role].get(kind)
    builtin = type(given) in BUILTIN[role].values()
    if not (builtin or isinstance(given, Mapping)):
        raise ConfigError(f"{role}_options = {given!r} is not a table of options (e.g. {role}_options = {{ hidden = 64 }})")
    if builtin and type(given) is not cls:
        if given != type(given)():
            raise ConfigError(f"{role}_options: options of another kind given for {role} = {kind!r}")
        given = {}
    if cls is None:
        return given if isinstance(given, Options) else Options(given, f"{role}_options")
    if type(given) is cls:
        return given
    return build(cls, given.to_plain() if isinstance(given, Options) else dict(given), f"{role}_options")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: optimiser, schedule, data, seed and the machine it runs on."""

    epochs: int = described(50, "epochs to train")
    batch_size: int = described(100, "batch size")
    lr: float = described(5e-4, "learning rate")
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    free_bits: float = 0.0  # nats per latent dimension: KL below it (batch mean) costs nothing in the loss
    iwae_k: int = 1  # 1: the ELBO; K > 1: the importance-weighted bound with K samples (Burda et al.)
    lr_schedule: LrSchedule = "none"  # per step: cosine decay to 0, or one-cycle up to max_lr and down
    max_lr: float = 3e-3  # the one-cycle schedule's peak
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay
    seed: int = described(0, "random seed")
    dataset: DatasetName = described("auto", "auto: full MNIST if cached or downloadable within seconds, else the embedded 10,000 digits")
    data_path: str = described("", "a folder of IDX files or a Keras-style mnist.npz")
    binarize: Binarize = described("none", "pixel binarisation (dynamic = resampled each epoch)")
    eval_batch_size: int = 250  # small evaluation batches stay in cache (docs/performance.md)
    threads: int = described(0, "CPU threads, fixed (0 = the cores, shared with other mnist-vae processes computing beside it)")
    precision: Precision = described(
        "fp32", "autocast precision (auto = bf16 where the hardware computes it natively; fp16 needs cuda/mps)"
    )
    channels_last: bool = True
    device: str = described("auto", "auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps")

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs)
        check_positive("batch_size", self.batch_size)
        check_positive("eval_batch_size", self.eval_batch_size)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr: must be a positive number, got {self.lr}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ConfigError(f"beta: must be a non-negative number, got {self.beta}")
        if self.kl_warmup_epochs < 0:
            raise ConfigError(f"kl_warmup_epochs: must be >= 0, got {self.kl_warmup_epochs}")
        for name in ("free_bits", "weight_decay"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name}: must be a non-negative number, got {value}")
        if not (self.max_lr > 0 and math.isfinite(self.max_lr)):
            raise ConfigError(f"max_lr: must be a positive number, got {self.max_lr}")
        check_positive("iwae_k", self.iwae_k)
        if self.iwae_k > 1 and self.free_bits > 0:
            raise ConfigError(f"free_bits: applies to the ELBO (iwae_k = 1), not to the bound with iwae_k = {self.iwae_k}")
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.threads < 0:
            raise ConfigError(f"threads: must be >= 0 (0 = all cores), got {self.threads}")
        check_choice("binarize", self.binarize, BINARIZE_MODES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("dataset", self.dataset, DATASET_NAMES)


@dataclass(frozen=True)
class EvalConfig:
    """How a trained run is measured (``mnist-vae evaluate``, the study): the defaults live here only."""

    k: int = 1000  # importance samples per test image (5000 = the published protocol)
    chunk: int = 256  # latent codes decoded at once in the NLL (small is fast on CPU)
    n_samples: int = 10000  # generated samples judged by the digit classifier
    precision: EvalPrecision = "fp32"  # the decoder's precision in the NLL; auto: bf16 where the hardware has it
    seed: int = 0
    probe_steps: int = 100  # L-BFGS iterations of the latent probe

    def __post_init__(self) -> None:
        check_positive("k", self.k)
        check_positive("chunk", self.chunk)
        check_positive("probe_steps", self.probe_steps)
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, int) or self.n_samples < 2:
            raise ConfigError(f"samples: must be an integer >= 2, got {self.n_samples!r}")
        check_choice("precision", self.precision, EVAL_PRECISIONS)


@dataclass(frozen=True)
class RunConfig:
    """A named model configuration plus how to train it."""

    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/TOML-ready dict (tuples become lists, options plain dicts)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=plain))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> RunConfig:
        """Build and validate from a dict; unknown keys and wrong types raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
        unknown = set(data) - {"name", "description", "model", "train"}
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {sorted(map(str, unknown))}; valid: name, description, model, train")
        name = coerce("name", data.get("name", "custom"), str, source)
        description = coerce("description", data.get("description", ""), str, source)
        model_data = data.get("model", {})
        model_data = migrate(model_data, source) if isinstance(model_data, dict) else model_data
        model = build(ModelConfig, model_data, f"{source} [model]")
        train = build(TrainConfig, data.get("train", {}), f"{source} [train]")
        return cls(name=name, description=description, model=model, train=train)

    def to_toml(self) -> str:
        """TOML text that :func:`load_toml` reads back to an equal config."""
        d = self.to_dict()
        lines = [f"name = {toml_value(d['name'])}", f"description = {toml_value(d['description'])}", ""]
        for section in ("model", "train"):
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in d[section].items() if not isinstance(v, dict)]
            lines.append("")
            for k, table in ((k, v) for k, v in d[section].items() if isinstance(v, dict)):  # a kind's options, as a table of its own
                lines += [f"[{section}.{k}]", *(f"{toml_key(o)} = {toml_value(v)}" for o, v in table.items()), ""]
        return "\n".join(lines)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed by name (``cfg.replace(epochs=3, latent_dim=2)``), validated.

        ``name`` and ``description`` are the run's own; every other name is a field of the model or
        the training section (the names are unique across both).
        """
        top = {k: changes.pop(k) for k in ("name", "description") if k in changes}
        model_fields = field_names(ModelConfig) | set(LEGACY)
        unknown = [k for k in changes if k not in model_fields | field_names(TrainConfig)]
        if unknown:
            raise ConfigError(f"unknown field(s) {', '.join(unknown)}")
        model = {k: v for k, v in changes.items() if k in model_fields}
        train = {k: v for k, v in changes.items() if k not in model_fields}
        if any(k in LEGACY for k in model):  # an old-style field: into the options, over the config's own
            current = self.to_dict()["model"]
            if "encoder" in model or "decoder" in model:  # another kind starts from its own defaults
                current.update({f"{r}_options": {} for r in ("encoder", "decoder") if r in model})
            model = migrate({**current, **model}, "replace")
        return dataclasses.replace(
            self,
            **top,
            model=dataclasses.replace(self.model, **model) if model else self.model,
            train=dataclasses.replace(self.train, **train) if train else self.train,
        )

    def resume_difference(self, other: RunConfig) -> tuple[str, Any, Any] | None:
        """The first field, other than :data:`RESUMABLE`, in which ``other`` differs: (section.field, ours, theirs); None: it may continue this run."""
        mine, theirs = self.to_dict(), other.to_dict()
        for section in ("model", "train"):
            for key, value in mine[section].items():
                other_value = theirs[section].get(key)
                if key in RESUMABLE or other_value == value:
                    continue
                if isinstance(value, dict) and isinstance(other_value, dict):  # a kind's options: name the option
                    option = next(k for k in {**value, **other_value} if value.get(k) != other_value.get(k))
                    return f"{section}.{key}.{option}", value.get(option), other_value.get(option)
                return f"{section}.{key}", value, other_value
        return None

    def override(self, assignments: list[str]) -> RunConfig:
        """Apply ``key=value`` strings (``latent_dim=2``, ``train.lr=1e-3``); values parse as TOML."""
        d = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. latent_dim=2")
            key, raw = (s.strip() for s in item.split("=", 1))
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw  # a bare word such as `binarize=dynamic`
            option = _OPTION_KEY.fullmatch(key)
            if option:  # encoder_options.hidden=64: one option of a plugin
                table = dict(d["model"].get(option.group(1)) or {})
                table[option.group(2)] = value
                d["model"][option.group(1)] = table
                continue
            section, _, name = key.rpartition(".")
            if section and section not in ("model", "train"):
                raise ConfigError(f"--set {key}: unknown section {section!r}; use model.<field> or train.<field>")
            if not section:
                if name in ("name", "description"):
                    d[name] = raw
                    continue
                section = "model" if name in field_names(ModelConfig) | set(LEGACY) else "train"
            if name not in (field_names(ModelConfig) | set(LEGACY) if section == "model" else field_names(TrainConfig)):
                valid = sorted(field_names(ModelConfig) | field_names(TrainConfig))
                raise ConfigError(f"--set {key}: unknown field {name!r}; valid fields: {', '.join(valid)}")
            d[section][name] = value
        return RunConfig.from_dict(d, source="--set")


#: The only fields a resumed run may change: its length and this machine's thread count; all else is the run's own.
RESUMABLE: tuple[str, ...] = ("epochs", "threads")

#: ``encoder_options.NAME`` or ``model.decoder_options.NAME`` in ``--set`` and study variants.
_OPTION_KEY = re.compile(r"(?:model\.)?((?:en|de)coder_options)\.([\w-]+)")


def load_toml(path: str | Path) -> RunConfig:
    """Read a config file written by :meth:`RunConfig.to_toml` (or by hand)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    return RunConfig.from_dict(data, source=str(path))
