"""The built-in encoders q(z|x): an LSTM over the image rows (``lstm``), or a dense MLP baseline (``mlp``).

Both register through the model registry (models/registry.py), as a plugin's encoder does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..kinds import IMAGE_SIZE, LSTMOptions, MLPOptions
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
    ``dense`` layers and the two heads.
    """

    def __init__(self, latent_dim: int, options: MLPOptions | LSTMOptions) -> None:
        super().__init__()
        self.options = options
        self.lstm: nn.LSTM | None = None  # the lstm encoder's; None for the mlp
        self.attention: nn.Linear | None = None
        features = self._reader(options)
        self.norm = nn.LayerNorm(features) if options.layernorm else None
        self.hidden = _mlp([features, *options.dense])
        width = options.dense[-1] if options.dense else features
        self.mu = nn.Linear(width, latent_dim)
        self.logvar = nn.Linear(width, latent_dim)

    def _reader(self, options: MLPOptions | LSTMOptions) -> int:
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
        if self.options.relu_on_mu:
            mu = torch.relu(mu)  # the published code's flaw, kept only in the `original` preset
        return mu, self.logvar(h)


class MLPEncoder(Encoder):
    """``encoder = "mlp"``: the flat image [B, 784] feeds the dense layers."""

    def _reader(self, options: MLPOptions | LSTMOptions) -> int:
        return IMAGE_SIZE * IMAGE_SIZE

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class LSTMEncoder(Encoder):
    """``encoder = "lstm"``: an LSTM reads the 28 rows; ``readout`` picks what of it feeds the code."""

    options: LSTMOptions

    def _reader(self, options: MLPOptions | LSTMOptions) -> int:
        assert isinstance(options, LSTMOptions)
        # One step per image row: 28 steps of 28 pixels.
        self.lstm = nn.LSTM(
            input_size=IMAGE_SIZE,
            hidden_size=options.hidden,
            num_layers=options.layers,
            batch_first=True,
            bidirectional=options.bidirectional,
        )
        width = options.hidden * (2 if options.bidirectional else 1)
        self.attention = nn.Linear(width, 1) if options.readout == "attention" else None  # one score per row; softmax over the 28 rows
        return width * (IMAGE_SIZE if options.readout == "all" else 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._readout(x)

    def _readout(self, x: torch.Tensor) -> torch.Tensor:
        out, (h_n, _) = self._lstm(x)  # out [B, 28, D] (D = H, or 2H both ways); h_n [layers·directions, B, H]
        readout = self.options.readout
        if readout == "all":
            return out.flatten(1)  # [B, 28·D]
        if readout == "mean":
            return out.mean(1)  # [B, D]
        if readout == "attention":
            assert self.attention is not None
            return (torch.softmax(self.attention(out), 1) * out).sum(1)  # [B, D]
        # last: the top layer's final state, both directions' when bidirectional
        return torch.cat([h_n[-2], h_n[-1]], 1) if self.options.bidirectional else h_n[-1]

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


register("encoder", "lstm", LSTMOptions, builtin=True)(lambda cfg, options: LSTMEncoder(cfg.latent_dim, options))
register("encoder", "mlp", MLPOptions, builtin=True)(lambda cfg, options: MLPEncoder(cfg.latent_dim, options))
