"""Pictures of a study's claims: a forest plot of the verdicts, and how each claim's interval narrowed as seeds came."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from .plots import _save

#: Verdict -> colour, as in the report's tables.
COLOURS = {"supported": "#2e7d32", "contradicted": "#c62828", "negligible": "#1565c0", "inconclusive": "#b8860b"}


@dataclass(frozen=True)
class ClaimPoint:
    """One claim as drawn: its label, effect and interval, threshold, margin, verdict, and the interval after each seed."""

    label: str
    mean: float
    lo: float
    hi: float
    threshold: float
    margin: float | None
    verdict: str
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (seeds, lo, hi)


def _colour(verdict: str) -> str:
    return COLOURS.get(verdict.split(":")[0].split(" (")[0].split(",")[0], "#555555")


def _finite(x: float, fallback: float) -> float:
    return x if math.isfinite(x) else fallback


def forest(points: list[ClaimPoint], path: Path) -> Path:
    """Each claim on its own row, scaled to its own interval: the threshold at 0, the margin shaded, the verdict in colour."""
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(points) + 1.2))
    for i, p in enumerate(points):
        y = len(points) - 1 - i
        lo, hi = _finite(p.lo, p.mean - 1), _finite(p.hi, p.mean + 1)
        scale = max(abs(lo - p.threshold), abs(hi - p.threshold), abs(p.mean - p.threshold), p.margin or 0.0, 1e-12)
        if p.margin:
            ax.fill_betweenx([y - 0.35, y + 0.35], -p.margin / scale, p.margin / scale, color="#1565c0", alpha=0.12, lw=0)
        ax.plot([(lo - p.threshold) / scale, (hi - p.threshold) / scale], [y, y], color=_colour(p.verdict), lw=2.5)
        ax.plot([(p.mean - p.threshold) / scale], [y], "o", color=_colour(p.verdict))
        ax.text(1.08, y, p.verdict.split(" (")[0], va="center", fontsize=8, color=_colour(p.verdict))
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(range(len(points)), [p.label for p in reversed(points)], fontsize=8)
    ax.set_xlim(-1.1, 1.35)
    ax.set_xticks([-1, 0, 1], ["below", "threshold", "above"])
    ax.set_title("Claims: effect and 95% interval, each row scaled to its own interval (shaded: the negligible margin)", fontsize=10)
    return _save(fig, path)


def narrowing(points: list[ClaimPoint], path: Path, columns: int = 4) -> Path:
    """Small multiples: each claim's interval against the number of seeds, with its threshold (and margin)."""
    rows = max(1, math.ceil(len(points) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for ax, p in zip(axes.flat, points):
        n = [h[0] for h in p.history]
        finite = [v for h in p.history for v in h[1:] if math.isfinite(v)] + [p.threshold]
        bottom, top = min(finite), max(finite)
        pad = 0.1 * (top - bottom or 1.0)
        lo = [_finite(h[1], bottom - pad) for h in p.history]
        hi = [_finite(h[2], top + pad) for h in p.history]
        ax.fill_between(n, lo, hi, color=_colour(p.verdict), alpha=0.3, step="mid")
        ax.axhline(p.threshold, color="black", lw=1)
        if p.margin:
            for m in (p.threshold - p.margin, p.threshold + p.margin):
                ax.axhline(m, color="#1565c0", lw=0.8, ls="--")
        ax.set_ylim(bottom - pad, top + pad)
        ax.set_title(p.label if len(p.label) < 42 else p.label[:40] + "…", fontsize=7)
        ax.set_xlabel("seeds", fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(points) :]:
        ax.axis("off")
    fig.suptitle("How each claim's 95% interval narrowed as seeds were added (colour: verdict now)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
