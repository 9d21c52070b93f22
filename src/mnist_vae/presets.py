"""The seven named configurations of the original study, as data.

``list_configs()`` names them; ``get_config(name)`` builds a validated :class:`RunConfig`; an
unknown name raises :class:`ConfigError` listing the valid ones.
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .errors import ConfigError

# Each entry: a one-line description and the fields that differ from the dataclass defaults
# (ModelConfig's defaults are `baseline`'s decoder; TrainConfig's lr is 5e-4).
PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {
        "description": "3 transposed convs, no dropout, lr 0.0005",
        "model": {},
        "train": {"lr": 5e-4},
    },
    "deeper-decoder": {
        "description": "extra transposed conv and dense layers",
        "model": {
            "decoder_dense": [256, 256, 7 * 7 * 32],
            "decoder_convs": [[32, 2], [32, 1], [16, 2], [1, 1]],
        },
        "train": {"lr": 5e-4},
    },
    "dropout": {
        "description": "baseline with Dropout(0.25) after each hidden layer",
        "model": {"dropout": 0.25, "dropout_where": "every-hidden"},
        "train": {"lr": 5e-4},
    },
    "optimized": {
        "description": "smaller dense layers, more conv channels, lr 0.001",
        "model": {
            "decoder_dense": [128, 7 * 7 * 64],
            "decoder_reshape": [64, 7, 7],
            "decoder_convs": [[64, 2], [32, 2], [1, 1]],
        },
        "train": {"lr": 1e-3},
    },
    "fast-lr": {
        "description": "the learning-rate study: baseline at lr 0.001",
        "model": {},
        "train": {"lr": 1e-3},
    },
    "dense-encoder": {
        "description": "MLP encoder 784-256-128 instead of the LSTM, optimized decoder",
        "model": {
            "encoder": "mlp",
            "encoder_hidden": [256, 128],
            "decoder_dense": [128, 7 * 7 * 64],
            "decoder_reshape": [64, 7, 7],
            "decoder_convs": [[64, 2], [32, 2], [1, 1]],
        },
        "train": {"lr": 1e-3},
    },
    # Faithful to the published code, flaws included: ReLU on the mean of q(z|x) (it cannot be
    # negative, so half of the prior's mass is unreachable by the encoder) and Dropout(0.75)
    # between the transposed convolutions. Kept visible, not copied into the other presets.
    "original": {
        "description": "the published code as written (ReLU on mu, Dropout 0.75, dense output layer)",
        "model": {
            "readout": "all",
            "latent_dim": 64,
            "relu_on_mu": True,
            "decoder_dense": [98, 196],
            "decoder_reshape": [1, 14, 14],
            "decoder_convs": [[64, 1], [32, 1], [32, 2]],
            "head": "dense",
            "dropout": 0.75,
            "dropout_where": "between-convs",
        },
        "train": {"lr": 1e-3},
    },
}


def list_configs() -> list[str]:
    """Names of the built-in configurations, in the order of the study."""
    return list(PRESETS)


def get_config(name: str) -> RunConfig:
    """The named configuration as a validated :class:`RunConfig`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown configuration {name!r}; valid names: {', '.join(PRESETS)}")
    entry = PRESETS[name]
    return RunConfig.from_dict(
        {"name": name, "description": entry["description"], "model": entry["model"], "train": entry["train"]},
        source=f"preset {name}",
    )
