"""The claim pictures of a study's report: what to draw (computed here) and the drawing (``viz.claim_plots``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..stats.procedures import interval_of

FOREST, NARROWING = "claims_forest.png", "claims_narrowing.png"
MAX_PANELS = 16


def _points(result: dict[str, Any], with_history: bool) -> list[Any]:
    from ..viz.claim_plots import ClaimPoint

    sequential = bool(result["meta"].get("sequential"))
    out = []
    for c in result["claims"]:
        if c["verdict"] == "not measured" or not c.get("effect") or c["effect"]["n"] < 2:
            continue
        e, history = c["effect"], []
        if with_history:
            values = [c["values"][s] for s in sorted(c["values"], key=int)]
            bounds = tuple(c["bounds"]) if c.get("bounds") else None  # the range the claim's own verdict used
            for n in range(2, len(values) + 1):
                iv = interval_of(values[:n], bounds, sequential)
                history.append((n, iv.lo, iv.hi))
        label = f"{c['config']}: {c['claim']}"
        verdict = c["verdict"] + (", family-wise" if c.get("holm") == "holds" else "")
        out.append(ClaimPoint(label, e["mean"], e["lo"], e["hi"], c["threshold"], c.get("margin"), verdict, history))
    return out


def draw(out: Path, result: dict[str, Any]) -> list[tuple[str, str]]:
    """Write the forest plot (and, for a sequential study, the intervals against seeds); their (file, title)."""
    from ..viz import claim_plots

    points = _points(result, with_history=bool(result["meta"].get("sequential")))
    if not points:
        return []
    claim_plots.forest(points, Path(out) / FOREST)
    figures = [(FOREST, "The claims at a glance: effect, interval, threshold and verdict")]
    moving = [p for p in points if len(p.history) >= 2]
    if moving:
        moving.sort(key=lambda p: not p.verdict.startswith("inconclusive"))  # open claims first, then the settled
        claim_plots.narrowing(moving[:MAX_PANELS], Path(out) / NARROWING)
        figures.append((NARROWING, "How each claim's interval narrowed as seeds were added"))
    return figures
