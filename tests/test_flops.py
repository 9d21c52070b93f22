"""models/flops.py's hand counts against torch's own FLOP counter (torch.utils.flop_counter.FlopCounterMode).

Both count a multiply-add as 2 FLOPs: torch counts ``addmm`` as 2·m·n·k and a (transposed)
convolution as 2 · prod(weight shape) · prod(input's spatial shape), the same convention as
flops.py's ``2 * macs``.

What torch's counter cannot see, and how it is checked instead:

- ``nn.LSTM``: on the CPU it runs as one fused ``aten.lstm`` kernel, for which torch registers no
  FLOP formula (it reports 0). Its count is checked against the same LSTM unrolled into
  ``nn.LSTMCell`` steps with the same weights (whose ``addmm`` torch does count); the unrolled
  LSTM must give the LSTM's own output, so it is the same computation.
- Element-wise work (activations, dropout, LayerNorm, the attention readout's softmax and weighted
  sum, the reparameterisation): neither counter includes it (flops.py leaves it out by design, and
  torch has no formulas for those operators), so it is not compared.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnist_vae.models import VAE
from mnist_vae.models.flops import forward_flops, train_flops
from mnist_vae.presets import get_config

# (preset, changes): presets covering every layer kind (an MLP encoder, a dense head, stride-1 and
# stride-2 transposed convolutions, the `all` readout), and LSTM shapes no preset uses.
CASES = [
    ("baseline", {}),
    ("deeper-decoder", {}),
    ("original", {}),
    ("mlp-vae", {}),
    ("dense-encoder", {}),
    ("lstm-plus", {}),
    ("baseline", {"bidirectional": True}),
    ("baseline", {"lstm_layers": 2}),
    ("baseline", {"lstm_layers": 2, "bidirectional": True, "readout": "all"}),
    ("baseline", {"readout": "attention", "layernorm": True}),
    ("baseline", {"readout": "mean", "encoder_hidden": [32]}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in changes.items()) for name, changes in CASES]


def torch_flops(fn, *args) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args)
    return counter.get_total_flops()


def unrolled_lstm(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """``lstm(x)[0]`` (batch_first, no projection) step by step through ``nn.LSTMCell``s with its weights."""
    assert lstm.batch_first and lstm.proj_size == 0
    directions = 2 if lstm.bidirectional else 1
    seq = x
    for layer in range(lstm.num_layers):
        outs = []
        for d in range(directions):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            cell = nn.LSTMCell(seq.shape[-1], lstm.hidden_size)
            cell.weight_ih.copy_(getattr(lstm, "weight_ih" + sfx))
            cell.weight_hh.copy_(getattr(lstm, "weight_hh" + sfx))
            cell.bias_ih.copy_(getattr(lstm, "bias_ih" + sfx))
            cell.bias_hh.copy_(getattr(lstm, "bias_hh" + sfx))
            steps = range(seq.shape[1] - 1, -1, -1) if d else range(seq.shape[1])
            h = c = seq.new_zeros(seq.shape[0], lstm.hidden_size)
            out = [seq.new_empty(0)] * seq.shape[1]
            for t in steps:
                h, c = cell(seq[:, t], (h, c))
                out[t] = h
            outs.append(torch.stack(out, 1))
        seq = torch.cat(outs, -1)
    return seq


@pytest.mark.parametrize("name,changes", CASES, ids=IDS)
def test_forward_flops_match_torchs_flop_counter(name, changes):
    torch.manual_seed(0)
    cfg = get_config(name).replace(**changes).model if changes else get_config(name).model
    model = VAE(cfg).eval()
    x = torch.rand(1, 28, 28)
    mine = forward_flops(model)

    # The decoder: dense layers and transposed convolutions, all of them seen by torch's counter.
    z = torch.randn(1, cfg.latent_dim)
    assert mine["decoder"] == torch_flops(model.decoder, z)

    # The encoder: torch's counter sees its Linear layers but not the fused nn.LSTM kernel, whose
    # share comes from the unrolled LSTM (checked to compute the same thing).
    encoder = torch_flops(model.encoder, x)
    lstm = model.encoder.lstm
    if lstm is not None:
        with torch.no_grad():
            rows = x.reshape(1, 28, 28)
            assert torch.allclose(unrolled_lstm(lstm, rows), lstm(rows)[0], atol=1e-6)
            encoder += torch_flops(unrolled_lstm, lstm, rows)
            assert torch_flops(lstm, rows) == 0  # what the comparison assumes; if torch learns to count it, compare directly
    assert mine["encoder"] == encoder
    assert mine["total"] == mine["encoder"] + mine["decoder"]
    assert train_flops(model) == 3 * mine["total"]


def test_one_image_of_the_baseline_by_hand():
    """The convention spelled out once: FLOPs = 2 x multiply-adds, per image."""
    lstm = 28 * 4 * 64 * (28 + 64)  # 28 rows, four gates, input and recurrent products
    heads = 2 * 64 * 16  # mu and logvar
    dense = 16 * 256 + 256 * 1568
    convs = 7 * 7 * 32 * 32 * 9 + 14 * 14 * 32 * 16 * 9 + 28 * 28 * 16 * 1 * 9  # input pixels x weights
    flops = forward_flops(VAE(get_config("baseline").model))
    assert flops == {"encoder": 2 * (lstm + heads), "decoder": 2 * (dense + convs), "total": 2 * (lstm + heads + dense + convs)}
