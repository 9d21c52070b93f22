"""Matplotlib figures, written as PNG files atomically. Inputs are arrays and lists, not models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..io import atomic_path
from .tiles import tile


def _save(fig: Any, path: Path) -> Path:
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def image_grid(images: Any, path: Path, ncols: int = 8, title: str = "") -> Path:
    """A grid of digits (values in [0, 1] or uint8), dark ink on white."""
    mosaic = tile(images, ncols)
    fig, ax = plt.subplots(figsize=(mosaic.shape[1] / 28 * 0.9, mosaic.shape[0] / 28 * 0.9 + (0.4 if title else 0)))
    ax.imshow(1 - mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def image_rows(rows: Sequence[Any], labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Several equally long rows of digits, each with a label on the left."""
    ncols = len(rows[0])
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(4.0, ncols * 0.8), 0.95 * len(rows) + (0.4 if title else 0)), squeeze=False)
    for ax, row, label in zip(axes[:, 0], rows, labels):
        ax.imshow(1 - tile(row, ncols), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def loss_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Total, reconstruction and KL per epoch, train and test, in three panels."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, name in zip(axes, ("loss", "recon", "kl"), ("negative ELBO", "reconstruction (BCE)", "KL")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", ms=3, label="train")
        ax.plot(epochs, [r[f"test_{key}"] for r in history], "s-", ms=3, label="test")
        ax.set_title(name, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats per image")
    axes[0].legend()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def curves_with_bands(
    series: dict[str, list[list[float]]], path: Path, title: str = "", ylabel: str = "", low: float | None = None
) -> Path:
    """One line per name: the mean over its runs per epoch, with a band from the lowest to the highest run.

    ``series[name]`` holds one per-epoch curve per run (seed); curves of unequal length are cut to
    the shortest. ``low`` clips the y axis from below (the first epochs can dwarf the rest).
    """
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, runs in series.items():
        n = min(len(r) for r in runs)
        arr = np.array([r[:n] for r in runs], dtype=np.float64)
        epochs = np.arange(1, n + 1)
        (line,) = ax.plot(epochs, arr.mean(0), lw=1.6, label=f"{name} ({len(runs)} seed{'s' if len(runs) != 1 else ''})")
        if len(runs) > 1:
            ax.fill_between(epochs, arr.min(0), arr.max(0), color=line.get_color(), alpha=0.18, lw=0)
    if low is not None:
        ax.set_ylim(bottom=low)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def interval_dots(
    names: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    path: Path,
    marked: dict[str, str] | None = None,
    title: str = "",
    xlabel: str = "",
) -> Path:
    """A dot per name at its mean with a bar over its interval; ``marked`` names get a label and their own colour."""
    marked = marked or {}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    for yi, name, m, lo, hi in zip(y, names, means, lows, highs):
        colour = "tab:red" if name in marked else "tab:blue"
        finite = np.isfinite([lo, hi]).all()
        ax.errorbar([m], [yi], xerr=[[m - lo], [hi - m]] if finite else None, fmt="o", color=colour, capsize=4, ms=5)
        if name in marked:
            ax.axvline(m, color=colour, lw=0.8, ls="--", alpha=0.6)
    ax.set_yticks(y, [f"{n} ({marked[n]})" if n in marked else n for n in names], fontsize=9)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
