"""The options of the built-in model kinds, configured as a plugin's are: ``[model.encoder_options]`` and ``[model.decoder_options]``.

``encoder = "lstm"`` takes :class:`LSTMOptions`, ``encoder = "mlp"`` :class:`MLPOptions` and
``decoder = "conv"`` :class:`ConvOptions`; a plugin's kind takes its own dataclass
(docs/plugins.md). Each checks its values when built, each error naming ``role_options.field``.

Configs written before the built-in kinds had options kept these settings as fields of ``[model]``
(``lstm_hidden``, ``decoder_convs``, …). :func:`migrate` moves them into the options, so old
``config.toml`` files, run folders and shipped weights still open, and ``--set lstm_hidden=128``
still works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from .errors import ConfigError
from .fields import check_choice, check_positive, fmt_shape

IMAGE_SIZE = 28

# The choice types; every list of valid names (validation, the CLI's choices) is derived from these.
Readout = Literal["last", "all", "mean", "attention"]
Head = Literal["conv", "dense"]
DropoutPlace = Literal["every-hidden", "between-convs"]

READOUTS: tuple[str, ...] = get_args(Readout)
HEADS: tuple[str, ...] = get_args(Head)
DROPOUT_PLACES: tuple[str, ...] = get_args(DropoutPlace)


def _check_widths(name: str, widths: tuple[int, ...]) -> None:
    for i, width in enumerate(widths):
        check_positive(f"{name}[{i}]", width)


@dataclass(frozen=True)
class MLPOptions:
    """``encoder = "mlp"``: the flat image [B, 784] feeds ``dense`` layers, then the μ / log σ² heads.

    ``layernorm`` normalises the flat image first; ``relu_on_mu`` puts a ReLU on μ (the published
    code's flaw, kept only in the ``original`` preset)."""

    layernorm: bool = False
    dense: tuple[int, ...] = ()
    relu_on_mu: bool = False

    def __post_init__(self) -> None:
        _check_widths("encoder_options.dense", self.dense)


@dataclass(frozen=True)
class LSTMOptions:
    """``encoder = "lstm"``: an LSTM of ``hidden`` units (``layers`` stacked, ``bidirectional`` reads the
    rows both ways) reads the image as 28 rows of 28 pixels; ``readout`` picks what feeds the code: the
    final hidden state (``last``; both directions' when bidirectional), all 28 outputs flattened
    (``all``), their mean (``mean``) or a learned softmax-weighted sum (``attention``). Then as
    :class:`MLPOptions`: ``layernorm`` on the readout, ``dense`` layers, the heads, ``relu_on_mu``."""

    hidden: int = 64
    layers: int = 1
    bidirectional: bool = False
    readout: Readout = "last"
    layernorm: bool = False
    dense: tuple[int, ...] = ()
    relu_on_mu: bool = False

    def __post_init__(self) -> None:
        check_positive("encoder_options.hidden", self.hidden)
        check_positive("encoder_options.layers", self.layers)
        check_choice("encoder_options.readout", self.readout, READOUTS)
        _check_widths("encoder_options.dense", self.dense)


@dataclass(frozen=True)
class ConvOptions:
    """``decoder = "conv"``: ``dense`` layers, the last of which must have C·H·W units of ``reshape``;
    then transposed convolutions ``convs`` as (out_channels, stride), kernel ``kernel_size``, "same"
    padding (output side = input side · stride). With ``head = "conv"`` the last convolution must
    output one channel of 28×28 logits; with ``head = "dense"`` its output is flattened into a dense
    layer to 784 logits (the published code). ``dropout`` after each hidden layer
    (``dropout_where = "every-hidden"``) or between the convolutions only (``"between-convs"``)."""

    dense: tuple[int, ...] = (256, 7 * 7 * 32)
    reshape: tuple[int, int, int] = (32, 7, 7)
    convs: tuple[tuple[int, int], ...] = ((32, 2), (16, 2), (1, 1))
    head: Head = "conv"
    kernel_size: int = 3
    dropout: float = 0.0
    dropout_where: DropoutPlace = "every-hidden"

    def __post_init__(self) -> None:
        where = "decoder_options"
        check_choice(f"{where}.head", self.head, HEADS)
        check_choice(f"{where}.dropout_where", self.dropout_where, DROPOUT_PLACES)
        if not self.dense:
            raise ConfigError(f"{where}.dense: needs at least one dense layer (the one that feeds the reshape)")
        _check_widths(f"{where}.dense", self.dense)
        if len(self.reshape) != 3:
            raise ConfigError(f"{where}.reshape: expected [channels, height, width], got {list(self.reshape)}")
        _check_widths(f"{where}.reshape", self.reshape)
        for i, conv in enumerate(self.convs):
            if len(conv) != 2:
                raise ConfigError(f"{where}.convs[{i}]: expected [out_channels, stride], got {list(conv)}")
            check_positive(f"{where}.convs[{i}] out_channels", conv[0])
            check_positive(f"{where}.convs[{i}] stride", conv[1])
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"{where}.kernel_size: must be a positive odd number for 'same' padding, got {self.kernel_size}")
        if not (0.0 <= self.dropout < 1.0) or math.isnan(self.dropout):
            raise ConfigError(f"{where}.dropout: must be in [0, 1), got {self.dropout}")
        c, h, w = self.reshape
        if self.dense[-1] != c * h * w:
            raise ConfigError(f"{where}.dense: the last dense layer has {self.dense[-1]} units but reshape {c}x{h}x{w} needs {c * h * w}")
        shape = self.output_shape()
        if self.head == "conv" and shape != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ConfigError(
                f"{where}.convs: the decoder reaches {fmt_shape(shape)} but must end at 1x28x28 (channels x height x width) when head='conv'"
            )

    def output_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) after the last transposed convolution."""
        c, h, w = self.reshape
        for out_ch, stride in self.convs:
            c, h, w = out_ch, h * stride, w * stride
        return c, h, w


#: The built-in kinds' options, by role and kind.
BUILTIN: dict[str, dict[str, type]] = {"encoder": {"lstm": LSTMOptions, "mlp": MLPOptions}, "decoder": {"conv": ConvOptions}}

#: The ``[model]`` fields of configs written before the built-in kinds had options: role, option.
LEGACY: dict[str, tuple[str, str]] = {
    "lstm_hidden": ("encoder", "hidden"),
    "lstm_layers": ("encoder", "layers"),
    "bidirectional": ("encoder", "bidirectional"),
    "readout": ("encoder", "readout"),
    "layernorm": ("encoder", "layernorm"),
    "encoder_hidden": ("encoder", "dense"),
    "relu_on_mu": ("encoder", "relu_on_mu"),
    "decoder_dense": ("decoder", "dense"),
    "decoder_reshape": ("decoder", "reshape"),
    "decoder_convs": ("decoder", "convs"),
    "head": ("decoder", "head"),
    "kernel_size": ("decoder", "kernel_size"),
    "dropout": ("decoder", "dropout"),
    "dropout_where": ("decoder", "dropout_where"),
}
#: The kinds a config names when it names none.
DEFAULT_KINDS = {"encoder": "lstm", "decoder": "conv"}


def _default(role: str, option: str) -> Any:
    owner = next(cls for cls in BUILTIN[role].values() if option in {f.name for f in fields(cls)})
    return _plain(getattr(owner(), option))


def migrate(model: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """``[model]`` with its old-style fields moved into the built-in kinds' options (a copy; later values win).

    A field the configured kind has no option for (``lstm_hidden`` with ``encoder = "mlp"`` or a
    plugin's kind) is dropped when it holds the old default, as configs of that time wrote every
    field, and is an error otherwise."""
    old = [k for k in model if k in LEGACY]
    if not old:
        return model
    out = {k: v for k, v in model.items() if k not in LEGACY}
    for role in ("encoder", "decoder"):
        given = out.get(f"{role}_options") or {}
        options = dict(given) if isinstance(given, dict) else given
        kind = out.get(role, DEFAULT_KINDS[role])
        cls = BUILTIN[role].get(kind) if isinstance(kind, str) else None
        names = {f.name for f in fields(cls)} if cls else set()
        for key in old:
            key_role, option = LEGACY[key]
            if key_role != role:
                continue
            if option in names and isinstance(options, dict):
                options[option] = model[key]
            elif _plain(model[key]) != _default(role, option):
                raise ConfigError(f"{source} [model]: {key} = {model[key]!r} is not an option of {role} = {kind!r}")
        if options or f"{role}_options" in out:
            out[f"{role}_options"] = options
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
