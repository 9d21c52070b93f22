"""The claim table of a study's report: its first lines, its heading, its rows, and one line for what it cannot measure."""

from __future__ import annotations

from typing import Any

from .claims import SETTLED, protocol_differences


def headline(result: dict[str, Any]) -> str:
    """The report's first line: how many claims are settled family-wise (Holm), supported and contradicted, how many
    per claim, with the seeds and time it took."""
    claims, meta = result["claims"], result["meta"]
    measured = [c for c in claims if c["verdict"] != "not measured"]
    per_claim = [c for c in measured if c["verdict"] in SETTLED]
    settled = [c for c in per_claim if c.get("holm") == "holds"]
    count = {v: sum(c["verdict"] == v for c in settled) for v in SETTLED}
    seeds = [len(t["seeds"]) for t in result["table"]]
    spread = f"{min(seeds)}" if min(seeds) == max(seeds) else f"{min(seeds)}–{max(seeds)}"
    spent = meta.get("run_minutes") or {}
    minutes = spent.get("train", 0.0) + spent.get("eval", 0.0)
    wall = meta.get("wall_seconds")
    when = f"{wall / 60:.0f} min wall for this invocation, " if wall and not meta.get("report_only") else ""
    return (
        f"**{len(settled)} of {len(measured)} measured claims settled family-wise: {count['supported']} supported, "
        f"{count['contradicted']} contradicted, {count['negligible']} negligible.** Family-wise: Holm's method over the {len(measured)} claims' p-values, so the chance that any of these "
        f"{len(settled)} verdicts is wrong is at most 5%{_anytime(claims)}. Per claim (each at 5% on its own, the table's verdict "
        f"column): {len(per_claim)} settled. {len(claims) - len(measured)} not measured. "
        f"{spread} seeds per configuration; {when}{minutes:.0f} min of training and evaluation summed over the runs. "
        f"Verdicts by the {_procedure(claims)}."
    )


def _anytime(claims: list[dict[str, Any]]) -> str:
    sequential = any(c["procedure"].startswith("anytime-valid t") for c in claims)
    return ", at whatever round the study stopped" if sequential else ""


def _procedure(claims: list[dict[str, Any]]) -> str:
    procs = sorted({c["procedure"] for c in claims})
    return " and ".join(procs) + (" procedure" if len(procs) == 1 else " procedures")


def protocol_note(meta: dict[str, Any]) -> str:
    """Above the claim table: how this study's protocol differs from the write-up's, and what the verdicts then describe."""
    diffs = protocol_differences(meta)
    if not diffs:
        return "The protocol is the write-up's (50 epochs on MNIST, grey pixels)."
    return (
        f"The protocol differs from the write-up's: {'; '.join(diffs)}. The verdicts say whether each claim holds for "
        f"these models trained this way; they test the write-up's statements, not its exact runs."
    )


def verdict_text(c: dict[str, Any]) -> str:
    """The verdict cell: the verdict, and for an open claim the seeds that would give 80% power."""
    v = c["verdict"]
    if v == "not measured":
        return f"not measured: {c['why']}"
    if v == "inconclusive" and c.get("beyond_max_seeds"):
        return (f"inconclusive: would need about {c['seeds_for_power']} seeds for 80% power, more than --max-seeds "
                f"{c['beyond_max_seeds']}, so it drew no more seeds")  # fmt: skip
    if v == "inconclusive" and c.get("seeds_for_power"):
        return f"inconclusive (about {c['seeds_for_power']} seeds in all would give 80% power to settle it)"
    return v


def claim_lines(claims: list[dict[str, Any]], sources: tuple[str, ...]) -> list[list[str]]:
    """Head and rows of the claims the study measured (or could not for a reason other than a missing configuration)."""
    head = ["configuration", "claim", "measured as", "effect [95% interval]", "verdict (per claim)", "Holm (family-wise 5%)", "procedure"]
    body = [
        [c["config"], c["claim"], c["measure"], c.get("text", "—"), verdict_text(c), c.get("holm", "—"), c["procedure"]]
        for c in claims
        if c["source"] in sources and not c.get("missing")
    ]
    return [head, *body]


def missing_line(claims: list[dict[str, Any]], sources: tuple[str, ...]) -> str | None:
    """One line for the claims a study cannot measure because it lacks their configurations: which to add."""
    absent = [c for c in claims if c["source"] in sources and c.get("missing")]
    if not absent:
        return None
    names = list(dict.fromkeys(n for c in absent for n in c["missing"]))
    return f"{len(absent)} more claim(s) not measured: this study does not include {', '.join(names)}; add them with --configs to measure these."
