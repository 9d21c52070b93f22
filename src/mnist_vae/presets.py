"""The named configurations, as data over the one config type.

Three kinds: the seven variants of the original **write-up**; the **reference**, the standard MLP
VAE of pytorch/examples (``vae/main.py``) that every study measures the others against; and
configurations **beyond** the write-up (``lstm-plus``, from this project's encoder ablation,
docs/evaluation.md). ``list_configs()`` names them; ``get_config(name)`` builds a validated
:class:`RunConfig`; an unknown name raises :class:`ConfigError` listing the valid ones.
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .errors import ConfigError

# Each entry: its kind, a one-line description and the fields that differ from the dataclass
# defaults (the built-in kinds' option defaults are `baseline`'s; TrainConfig's lr is 5e-4).
KINDS = ("write-up", "reference", "control", "beyond")
PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {
        "description": "3 transposed convs, no dropout, lr 0.0005",
        "model": {},
        "train": {"lr": 5e-4},
    },
    "deeper-decoder": {
        "description": "extra transposed conv and dense layers",
        "model": {
            "decoder_options": {
                "dense": [256, 256, 7 * 7 * 32],
                "convs": [[32, 2], [32, 1], [16, 2], [1, 1]],
            },
        },
        "train": {"lr": 5e-4},
    },
    "dropout": {
        "description": "baseline with Dropout(0.25) after each hidden layer",
        "model": {"decoder_options": {"dropout": 0.25, "dropout_where": "every-hidden"}},
        "train": {"lr": 5e-4},
    },
    "optimized": {
        "description": "smaller dense layers, more conv channels, lr 0.001",
        "model": {
            "decoder_options": {
                "dense": [128, 7 * 7 * 64],
                "reshape": [64, 7, 7],
                "convs": [[64, 2], [32, 2], [1, 1]],
            },
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
            "encoder_options": {"dense": [256, 128]},
            "decoder_options": {
                "dense": [128, 7 * 7 * 64],
                "reshape": [64, 7, 7],
                "convs": [[64, 2], [32, 2], [1, 1]],
            },
        },
        "train": {"lr": 1e-3},
    },
    # Faithful to the published code, flaws included: ReLU on the mean of q(z|x) (it cannot be
    # negative, so half of the prior's mass is unreachable by the encoder) and Dropout(0.75)
    # between the transposed convolutions. Kept visible, not copied into the other presets.
    "original": {
        "description": "the published code as written (ReLU on mu, Dropout 0.75, dense output layer)",
        "model": {
            "latent_dim": 64,
            "encoder_options": {"readout": "all", "relu_on_mu": True},
            "decoder_options": {
                "dense": [98, 196],
                "reshape": [1, 14, 14],
                "convs": [[64, 1], [32, 1], [32, 2]],
                "head": "dense",
                "dropout": 0.75,
                "dropout_where": "between-convs",
            },
        },
        "train": {"lr": 1e-3},
    },
    # pytorch/examples vae/main.py (Kingma & Welling): 784-400-20 encoder, 20-400-784 decoder, Adam
    # 1e-3, batch 128. The example sums its loss over the batch, this program averages it; with
    # Adam the two take the same steps up to Adam's epsilon.
    "mlp-vae": {
        "kind": "reference",
        "description": "the standard MLP VAE of pytorch/examples: 784-400-20 encoder, 20-400-784 decoder, batch 128",
        "model": {
            "encoder": "mlp",
            "latent_dim": 20,
            "encoder_options": {"dense": [400]},
            "decoder_options": {
                "dense": [400],
                "reshape": [400, 1, 1],
                "convs": [],
                "head": "dense",
            },
        },
        "train": {"lr": 1e-3, "batch_size": 128},
    },
    # The control for the write-up's KL claim: `optimized` with the KL term off, i.e. an autoencoder
    # trained with the same noise, decoder and schedule. Its latent space has no pull towards N(0, I).
    "no-kl": {
        "kind": "control",
        "description": "optimized with the KL term off (beta 0): an autoencoder, the control for the KL claims",
        "model": {
            "decoder_options": {
                "dense": [128, 7 * 7 * 64],
                "reshape": [64, 7, 7],
                "convs": [[64, 2], [32, 2], [1, 1]],
            },
        },
        "train": {"lr": 1e-3, "beta": 0.0},
    },
    # The ablation's winner (docs/evaluation.md): the same LSTM over the 28 rows and the same
    # decoder as `optimized`, but μ and log σ² read all 28 hidden states instead of the last one.
    "lstm-plus": {
        "kind": "beyond",
        "description": "optimized with the LSTM's 28 row states, not only the last, feeding the latent code",
        "model": {
            "encoder_options": {"readout": "all"},
            "decoder_options": {
                "dense": [128, 7 * 7 * 64],
                "reshape": [64, 7, 7],
                "convs": [[64, 2], [32, 2], [1, 1]],
            },
        },
        "train": {"lr": 1e-3},
    },
}


def list_configs(kind: str | None = None) -> list[str]:
    """Names of the built-in configurations (of one ``kind``, or all), in the order of the study."""
    return [n for n, e in PRESETS.items() if kind is None or e.get("kind", "write-up") == kind]


def kind_of(name: str) -> str:
    """``write-up``, ``reference`` or ``beyond``."""
    return str(PRESETS[name].get("kind", "write-up")) if name in PRESETS else "custom"


#: Configurations a study runs only when named: no claim uses `original` (the published code, flaws
#: included), and it costs about half of the whole default study on a CPU (docs/evaluation.md).
ON_REQUEST = ("original",)


def study_configs() -> list[str]:
    """What ``mnist-vae study`` runs by default: every configuration a claim needs, the reference and those beyond."""
    return [n for n in list_configs() if n not in ON_REQUEST]


def get_config(name: str) -> RunConfig:
    """The named configuration as a validated :class:`RunConfig`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown configuration {name!r}; valid names: {', '.join(PRESETS)}")
    entry = PRESETS[name]
    return RunConfig.from_dict(
        {"name": name, "description": entry["description"], "model": entry["model"], "train": entry["train"]},
        source=f"preset {name}",
    )
