"""Benchmark: the product's training and evaluation speed against a plain reference loop, in one run.

    python -m mnist_vae.bench                      # all seven configurations, table + bench.json
    python -m mnist_vae.bench --configs optimized --epochs 3 --no-full-train

Every figure is measured in the same invocation, after warm-up, as the median of repeats. Each
configuration runs in its own subprocess so that its peak resident memory is its own.
"""

from __future__ import annotations

from .checks import summarize_precision
from .cli import main

__all__ = ["main", "summarize_precision"]
