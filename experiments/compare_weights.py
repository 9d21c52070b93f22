"""Whether two runs ended with bitwise the same weights (issue 19: behaviour unchanged by a refactor).

    python experiments/compare_weights.py RUN_A RUN_B

Compares every tensor of the newest checkpoint of each run folder and prints how many are equal.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mnist_vae.io.safetensors import read_safetensors
from mnist_vae.runs.checkpoint import list_checkpoints


def main() -> int:
    a, b = (Path(p) for p in sys.argv[1:3])
    wa, _ = read_safetensors(list_checkpoints(a)[-1] / "model.safetensors")
    wb, _ = read_safetensors(list_checkpoints(b)[-1] / "model.safetensors")
    same = [k for k in wa if k in wb and torch.equal(wa[k], wb[k])]
    print(f"{a} vs {b}: {len(same)} of {len(wa)} tensors bitwise equal ({list_checkpoints(a)[-1].name})")
    return 0 if len(same) == len(wa) == len(wb) else 1


if __name__ == "__main__":
    raise SystemExit(main())
