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
    fmt_shape,
    plain,
    toml_value,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

IMAGE_SIZE = 28

# The choice types; every list of valid names (validation, the CLI's choices) is derived from these.
Readout = Literal["last", "all", "mean", "attention"]
Head = Literal["conv", "dense"]
DropoutPlace = Literal["every-hidden", "between-convs"]
Binarize = Literal["none", "static", "dynamic"]
LrSchedule = Literal["none", "cosine", "onecycle"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
DatasetName = Literal["auto", "embedded", "mnist", "fashion-mnist"]
EvalPrecision = Literal["auto", "fp32", "bf16"]

READOUTS: tuple[str, ...] = get_args(Readout)
HEADS: tuple[str, ...] = get_args(Head)
DROPOUT_PLACES: tuple[str, ...] = get_args(DropoutPlace)
BINARIZE_MODES: tuple[str, ...] = get_args(Binarize)
LR_SCHEDULES: tuple[str, ...] = get_args(LrSchedule)
PRECISIONS: tuple[str, ...] = get_args(Precision)
DATASET_NAMES: tuple[str, ...] = get_args(DatasetName)
EVAL_PRECISIONS: tuple[str, ...] = get_args(EvalPrecision)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the VAE.

    Encoder: ``lstm`` reads the image as 28 rows of 28 pixels (``lstm_layers`` stacked layers,
    ``bidirectional`` reads the rows both ways); ``readout`` picks what feeds the code: the final
    hidden state (``last``; both directions' when bidirectional), all 28 outputs flattened (``all``),
    their mean (``mean``) or a learned softmax-weighted sum (``attention``). ``mlp`` flattens the
    image instead. ``layernorm`` normalises the readout (or the flat image); ``encoder_hidden`` are
    dense layers between it and the μ / log σ² heads. Any other ``encoder`` is a plugin's kind
    (docs/plugins.md), configured by its own ``encoder_options``.

    Decoder: ``decoder_dense`` dense layers, the last of which must have C·H·W units of
    ``decoder_reshape``; then transposed convolutions ``decoder_convs`` as (out_channels, stride),
    kernel 3, "same" padding (output side = input side · stride). With ``head="conv"`` the last
    convolution must output one channel of 28×28 logits; with ``head="dense"`` its output is
    flattened into a dense layer to 784 logits (the published code). That is the ``conv`` decoder;
    any other ``decoder`` is a plugin's kind, configured by its own ``decoder_options``.
    """

    encoder: str = "lstm"
    encoder_options: Options = field(default_factory=Options)
    lstm_hidden: int = 64
    lstm_layers: int = 1
    bidirectional: bool = False
    readout: Readout = "last"
    layernorm: bool = False
    encoder_hidden: tuple[int, ...] = ()
    latent_dim: int = 16
    relu_on_mu: bool = False
    decoder: str = "conv"
    decoder_options: Options = field(default_factory=Options)
    decoder_dense: tuple[int, ...] = (256, 7 * 7 * 32)
    decoder_reshape: tuple[int, int, int] = (32, 7, 7)
    decoder_convs: tuple[tuple[int, int], ...] = ((32, 2), (16, 2), (1, 1))
    head: Head = "conv"
    dropout: float = 0.0
    dropout_where: DropoutPlace = "every-hidden"
    kernel_size: int = 3

    def __post_init__(self) -> None:
        for role in ("encoder", "decoder"):
            options = getattr(self, f"{role}_options")
            if not isinstance(options, Options):  # a plain dict from cfg.replace(encoder_options={...})
                object.__setattr__(self, f"{role}_options", Options(options, f"{role}_options"))
            if not isinstance(getattr(self, role), str):  # the kind and its options are the model factory's to check
                raise ConfigError(f"{role}: expected the name of a kind, got {getattr(self, role)!r}")
        check_choice("readout", self.readout, READOUTS)
        check_choice("head", self.head, HEADS)
        check_choice("dropout_where", self.dropout_where, DROPOUT_PLACES)
        check_positive("lstm_hidden", self.lstm_hidden)
        check_positive("lstm_layers", self.lstm_layers)
        if self.encoder != "lstm":
            lstm_only = {"lstm_layers": self.lstm_layers != 1, "bidirectional": self.bidirectional, "readout": self.readout != "last"}
            for name, changed in lstm_only.items():
                if changed:
                    raise ConfigError(f"{name}: applies to the lstm encoder only, not encoder = {self.encoder!r}")
        check_positive("latent_dim", self.latent_dim)
        for i, width in enumerate(self.encoder_hidden):
            check_positive(f"encoder_hidden[{i}]", width)
        if not self.decoder_dense:
            raise ConfigError("decoder_dense: needs at least one dense layer (the one that feeds the reshape)")
        for i, width in enumerate(self.decoder_dense):
            check_positive(f"decoder_dense[{i}]", width)
        if len(self.decoder_reshape) != 3:
            raise ConfigError(f"decoder_reshape: expected [channels, height, width], got {list(self.decoder_reshape)}")
        for i, v in enumerate(self.decoder_reshape):
            check_positive(f"decoder_reshape[{i}]", v)
        for i, conv in enumerate(self.decoder_convs):
            if len(conv) != 2:
                raise ConfigError(f"decoder_convs[{i}]: expected [out_channels, stride], got {list(conv)}")
            check_positive(f"decoder_convs[{i}] out_channels", conv[0])
            check_positive(f"decoder_convs[{i}] stride", conv[1])
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size: must be a positive odd number for 'same' padding, got {self.kernel_size}")
        if not (0.0 <= self.dropout < 1.0) or math.isnan(self.dropout):
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        c, h, w = self.decoder_reshape
        if self.decoder_dense[-1] != c * h * w:
            raise ConfigError(
                f"decoder_dense: the last dense layer has {self.decoder_dense[-1]} units but decoder_reshape {c}x{h}x{w} needs {c * h * w}"
            )
        shape = self.decoder_output_shape()
        if self.head == "conv" and shape != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ConfigError(
                f"decoder_convs: the decoder reaches {fmt_shape(shape)} but must end at 1x28x28 "
                f"(channels x height x width) when head='conv'"
            )
        if self.head == "dense" and not self.decoder_convs and shape[0] * shape[1] * shape[2] < 1:
            raise ConfigError("decoder_convs: empty decoder")

    def decoder_output_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) after the last transposed convolution."""
        c, h, w = self.decoder_reshape
        for out_ch, stride in self.decoder_convs:
            c, h, w = out_ch, h * stride, w * stride
        return c, h, w


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
        model = build(ModelConfig, data.get("model", {}), f"{source} [model]")
        train = build(TrainConfig, data.get("train", {}), f"{source} [train]")
        return cls(name=name, description=description, model=model, train=train)

    def to_toml(self) -> str:
        """TOML text that :func:`load_toml` reads back to an equal config."""
        d = self.to_dict()
        lines = [f"name = {toml_value(d['name'])}", f"description = {toml_value(d['description'])}", ""]
        for section in ("model", "train"):
            lines.append(f"[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in d[section].items()]
            lines.append("")
        return "\n".join(lines)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with fields changed by name (``cfg.replace(epochs=3, latent_dim=2)``), validated.

        ``name`` and ``description`` are the run's own; every other name is a field of the model or
        the training section (the names are unique across both).
        """
        top = {k: changes.pop(k) for k in ("name", "description") if k in changes}
        model_fields = field_names(ModelConfig)
        unknown = [k for k in changes if k not in model_fields | field_names(TrainConfig)]
        if unknown:
            raise ConfigError(f"unknown field(s) {', '.join(unknown)}")
        model = {k: v for k, v in changes.items() if k in model_fields}
        train = {k: v for k, v in changes.items() if k not in model_fields}
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
                if key not in RESUMABLE and theirs[section].get(key) != value:
                    return f"{section}.{key}", value, theirs[section].get(key)
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
                section = "model" if name in field_names(ModelConfig) else "train"
            if name not in field_names(ModelConfig if section == "model" else TrainConfig):
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
