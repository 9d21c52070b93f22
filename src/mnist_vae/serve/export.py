"""Export a trained run's encoder and decoder as ONNX graphs (``mnist-vae export RUN --format onnx``).

- ``encoder.onnx``: input ``images`` [B, 28, 28] float32 in [0, 1] -> outputs ``mu``, ``logvar`` [B, latent_dim]
- ``decoder.onnx``: input ``z`` [B, latent_dim] float32 -> output ``probabilities`` [B, 28, 28]

The batch axis is dynamic. Both graphs are traced with torch's TorchScript-based exporter, which
turns the row LSTM into one ONNX ``LSTM`` op. That exporter needs the ``onnx`` package (torch
2.9 and newer), and running the files needs ``onnxruntime``: both come with ``mnist-vae[onnx]``.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import IMAGE_SIZE
from ..errors import MnistVaeError
from ..io import atomic_path, atomic_write_text
from ..models import VAE

OPSET = 17


class EncoderGraph(nn.Module):
    """images [B, 28, 28] -> (μ, log σ²)."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.encoder = vae.encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(images)


class DecoderGraph(nn.Module):
    """z [B, latent_dim] -> pixel probabilities [B, 28, 28]."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode_probs(z)


def _export(module: nn.Module, example: torch.Tensor, path: Path, inputs: list[str], outputs: list[str]) -> None:
    kwargs: dict[str, Any] = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    axes = {name: {0: "batch"} for name in inputs + outputs}
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and warns about LSTM batch sizes: our LSTM
        # has no initial-state inputs, so ONNX starts it from zeros at any batch size (the test checks).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(tmp), input_names=inputs, output_names=outputs, dynamic_axes=axes, opset_version=OPSET, **kwargs
        )


@torch.no_grad()
def export_onnx(model: VAE, out_dir: str | Path, config_name: str = "") -> list[Path]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``onnx.json`` (shapes and names) to ``out_dir``."""
    try:
        import onnx
    except ImportError:
        raise MnistVaeError("export needs the onnx extra: pip install 'mnist-vae[onnx]'") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    latent = model.cfg.latent_dim
    enc, dec = out / "encoder.onnx", out / "decoder.onnx"
    _export(EncoderGraph(model), torch.rand(2, IMAGE_SIZE, IMAGE_SIZE), enc, ["images"], ["mu", "logvar"])
    _export(DecoderGraph(model), torch.randn(2, latent), dec, ["z"], ["probabilities"])
    for p in (enc, dec):
        onnx.checker.check_model(str(p))
    info = {
        "config": config_name,
        "opset": OPSET,
        "encoder": {
            "file": enc.name,
            "inputs": {"images": ["batch", IMAGE_SIZE, IMAGE_SIZE]},
            "outputs": {"mu": ["batch", latent], "logvar": ["batch", latent]},
            "pixels": "float32 in [0, 1]",
        },
        "decoder": {"file": dec.name, "inputs": {"z": ["batch", latent]}, "outputs": {"probabilities": ["batch", IMAGE_SIZE, IMAGE_SIZE]}},
    }
    meta = out / "onnx.json"
    atomic_write_text(meta, json.dumps(info, indent=2))
    return [enc, dec, meta]
