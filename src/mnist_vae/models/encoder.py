"""The built-in encoders q(z|x): an LSTM over the image rows (``lstm``), or a dense MLP baseline (``mlp``).

Both register through the model registry (models/registry.py), as a plugin's encoder does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import IMAGE_SIZE, ModelConfig
from .registry import register

#: Set once oneDNN has refused a bf16 LSTM on this CPU (it needs AVX512-BF16 or AMX): from then on
#: the LSTM runs in fp32 under bf16 autocast, and the layers after it still in bf16.
_cpu_bf16_lstm_unsupported = False


def _mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(d_in, d_out), nn.ReLU(inplace=True)]  # Linear keeps its input, not its output
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """The built-in encoders' common part: x [B, 28, 28] in [0, 1] -> features -> (μ, log σ²), each [B, latent_dim].

    A subclass builds what turns the image into features (:meth:`_reader`, its layers created first)
    and computes them (:meth:`features`); this class adds the optional LayerNorm, the dense layers
    ``encoder_hidden`` and the two heads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lstm: nn.LSTM | None = None  # the lstm encoder's; None for the mlp
        self.attention: nn.Linear | None = None
        features = self._reader(cfg)
        self.norm = nn.LayerNorm(features) if cfg.layernorm else None
        self.hidden = _mlp([features, *cfg.encoder_hidden])
        width = cfg.encoder_hidden[-1] if cfg.encoder_hidden else features
        self.mu = nn.Linear(width, cfg.latent_dim)
        self.logvar = nn.Linear(width, cfg.latent_dim)

    def _reader(self, cfg: ModelConfig) -> int:
        """Build the layers that read the image; returns the number of features they give."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 28 rows, 28 pixels] -> [B, features]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(x.shape[0], IMAGE_SIZE, IMAGE_SIZE)  # [B, 28 rows, 28 pixels]
        h = self.features(x)  # [B, features]; [B, 784] for the MLP
        if self.norm is not None:
            h = self.norm(h)
        h = self.hidden(h)
        mu = self.mu(h)
        if self.cfg.relu_on_mu:
            mu = torch.relu(mu)  # the published code's flaw, kept only in the `original` preset
        return mu, self.logvar(h)


class MLPEncoder(Encoder):
    """``encoder = "mlp"``: the flat image [B, 784] feeds the dense layers."""

    def _reader(self, cfg: ModelConfig) -> int:
        return IMAGE_SIZE * IMAGE_SIZE

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class LSTMEncoder(Encoder):
    """``encoder = "lstm"``: an LSTM reads the 28 rows; ``readout`` picks what of it feeds the code."""

    def _reader(self, cfg: ModelConfig) -> int:
        # One step per image row: 28 steps of 28 pixels.
        self.lstm = nn.LSTM(
            input_size=IMAGE_SIZE,
            hidden_size=cfg.lstm_hidden,
            num_layers=cfg.lstm_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
        )
        width = cfg.lstm_hidden * (2 if cfg.bidirectional else 1)
        self.attention = nn.Linear(width, 1) if cfg.readout == "attention" else None  # one score per row; softmax over the 28 rows
        return width * (IMAGE_SIZE if cfg.readout == "all" else 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._readout(x)

    def _readout(self, x: torch.Tensor) -> torch.Tensor:
        out, (h_n, _) = self._lstm(x)  # out [B, 28, D] (D = H, or 2H both ways); h_n [layers·directions, B, H]
        readout = self.cfg.readout
        if readout == "all":
            return out.flatten(1)  # [B, 28·D]
        if readout == "mean":
            return out.mean(1)  # [B, D]
        if readout == "attention":
            assert self.attention is not None
            return (torch.softmax(self.attention(out), 1) * out).sum(1)  # [B, D]
        # last: the top layer's final state, both directions' when bidirectional
        return torch.cat([h_n[-2], h_n[-1]], 1) if self.cfg.bidirectional else h_n[-1]

    def _lstm(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        global _cpu_bf16_lstm_unsupported
        assert self.lstm is not None
        cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        if cpu_autocast and _cpu_bf16_lstm_unsupported:
            with torch.autocast("cpu", enabled=False):
                return self.lstm(x.float())
        try:
            return self.lstm(x)
        except RuntimeError as exc:
            if not (cpu_autocast and "primitive descriptor" in str(exc)):
                raise
            _cpu_bf16_lstm_unsupported = True
            return self._lstm(x)


register("encoder", "lstm", builtin=True)(lambda cfg, options: LSTMEncoder(cfg))
register("encoder", "mlp", builtin=True)(lambda cfg, options: MLPEncoder(cfg))
