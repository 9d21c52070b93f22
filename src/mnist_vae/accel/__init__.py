"""The speed work: faster paths that compute the same bits as PyTorch's stock path.

- ``bf16_copy.py``: a Linear that keeps a bf16 copy of its weight for CPU bf16 training, and the
  fused optimizer update through it (uses ``torch._fused_adam_`` / ``torch._fused_adamw_`` and the
  tensor's ``_version``).
- ``convt.py``: transposed convolutions off oneDNN's slow CPU kernels (GEMM / conv2d paths for
  stride 1; a split backward for strided layers and under CPU bf16 autocast, which uses
  ``torch.ops.aten.convolution_backward``).
- ``malloc.py``: glibc's allocator kept from returning per-step buffers to the OS (ctypes; a no-op
  where glibc is absent).

The contract, for whoever changes these files or upgrades torch:

1. **Same bits.** Each path gives the weights, optimizer state and losses of the stock path exactly
   (the GEMM / conv2d paths: the same sums in another order, equal to ~1e-6). The checks:
   ``tests/test_bf16_copy.py`` (a bf16 step with copies and split backward against the stock
   step, resume through a checkpoint), ``tests/test_convt.py`` (each path against
   ``nn.ConvTranspose2d``), ``tests/test_accel.py`` (the fallbacks below) and the bitwise-equal
   weights of ``experiments/compare_weights.py`` across a refactor.
2. **Default on where proven.** A path is taken only under the conditions its tests cover (CPU,
   the layout and precision each docstring names); anything else runs the stock kernel.
3. **A private torch API that disappears costs speed, never a run.** Each one is looked up through
   :func:`private_api` when a layer or step is built; if it is missing, that path is switched off
   (the stock path runs), with one warning per missing API for the whole process.
"""

from __future__ import annotations

import warnings
from typing import Any

_warned: set[str] = set()


def private_api(owner: Any, name: str, label: str) -> Any | None:
    """``owner.name`` (a private torch API called ``label`` in messages), or None with one warning if this torch lacks it."""
    try:
        return getattr(owner, name)
    except (AttributeError, RuntimeError):  # torch.ops namespaces raise either for an unknown op
        if label not in _warned:
            _warned.add(label)
            warnings.warn(f"{label} is missing in torch here; its faster path is off and the stock path runs (same results)", stacklevel=2)
        return None
