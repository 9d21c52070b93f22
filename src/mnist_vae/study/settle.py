"""``study --until-settled``: which seeds the next round adds, the rounds a study has taken, and its time budget.

After the first round, a round adds seeds only to the configurations that open claims need, until
every claim is settled, every configuration they need has ``max_seeds`` seeds, or the next round
would overrun the budget. The rounds taken are recorded in ``OUT/rounds.json`` before they run, so
a killed study, started again, re-runs the same rounds (finished runs are skipped) and goes on.
Verdicts then come from the anytime-valid procedure (:mod:`mnist_vae.stats.sequential`), which
stays valid however many rounds are looked at.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_write_text

ROUNDS = "rounds.json"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*")
_UNIT = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, None: 60}


def parse_duration(text: str) -> float:
    """``90m``, ``1.5h``, ``45s`` or a bare number of minutes -> seconds; anything else is a one-line error."""
    m = _DURATION.fullmatch(text)
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"--budget: {text!r} is not a duration such as 90m, 1.5h or 600s")
    return float(m.group(1)) * _UNIT[m.group(2)]


def load_rounds(out: Path) -> list[dict[str, list[int]]]:
    """The rounds recorded in ``out`` (each: configuration -> seeds added)."""
    rounds: list[dict[str, list[int]]] = _read(out)["rounds"]
    return rounds


def load_timing(out: Path) -> list[dict[str, Any]]:
    """Per round recorded in ``out``: ``round`` (from 1), ``jobs``, the wall seconds estimated before it ran
    (``estimate_s``, ``upper_s``) and measured (``measured_s``, None until it finished or when unknown).
    Empty for a rounds.json written before rounds were timed."""
    path = Path(out) / ROUNDS
    try:
        return [
            {
                "round": int(t["round"]),
                "jobs": int(t["jobs"]),
                **{k: None if t.get(k) is None else float(t[k]) for k in ("estimate_s", "upper_s", "measured_s")},
                "source": str(t.get("source", "")),
            }
            for t in _read(out).get("timing", [])
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path}: its 'timing' is unreadable; remove it to start the sequential rounds again") from None


def _read(out: Path) -> dict[str, Any]:
    path = Path(out) / ROUNDS
    if not path.exists():
        return {"rounds": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {**data, "rounds": [{str(k): [int(s) for s in v] for k, v in r.items()} for r in data["rounds"]]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{path}: unreadable; remove it to start the sequential rounds again") from None


def save_rounds(out: Path, rounds: list[dict[str, list[int]]], timing: list[dict[str, Any]] | None = None) -> None:
    """Record the rounds (atomically), before the newest one runs, and with them the rounds' ``timing``
    (None: keep what the file has)."""
    timing = load_timing(out) if timing is None else timing
    data: dict[str, Any] = {"rounds": rounds, **({"timing": timing} if timing else {})}
    atomic_write_text(Path(out) / ROUNDS, json.dumps(data, indent=2))


def seeds_so_far(rounds: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    """Every configuration's seeds over all rounds, in order."""
    out: dict[str, list[int]] = {}
    for r in rounds:
        for name, seeds in r.items():
            out.setdefault(name, [])
            out[name] += [s for s in seeds if s not in out[name]]
    return out


def open_claims(claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured claims whose verdict does not yet hold family-wise (what the headline still lacks)."""
    return [c for c in claims if c["verdict"] != "not measured" and c.get("holm") != "holds"]


def hopeless(claim: dict[str, Any], max_seeds: int) -> bool:
    """Whether an open claim would need more than ``max_seeds`` seeds at its current estimate (it then draws no more)."""
    need = claim.get("seeds_for_power")
    return need is not None and need > max_seeds


def next_round(
    claims: list[dict[str, Any]], have: dict[str, list[int]], max_seeds: int, workers: int, minutes: dict[str, float] | None = None
) -> tuple[dict[str, list[int]], str]:
    """The next round's seeds per configuration, or ({}, why the study stops).

    Open claims are those not yet settled family-wise. One that would need more than ``max_seeds`` seeds at its
    current estimate draws no more. The others are fed cheapest first: a claim's next paired seed costs the run
    minutes (``minutes``, per configuration; 1 each if unknown) of the configurations that have the fewest of its
    seeds, and configurations are added claim by claim until ``workers`` are busy, each getting the next seeds up
    to ``max_seeds`` in all.
    """
    open_ = open_claims(claims)
    if not open_:
        return {}, "every claim the study can measure is settled family-wise"
    far = [c for c in open_ if hopeless(c, max_seeds)]
    later = f"; {len(far)} would need more than --max-seeds {max_seeds} and draw no more seeds" if far else ""

    def feeders(c: dict[str, Any]) -> list[str]:
        counts = {n: len(have.get(n, [])) for n in c["configs"] if len(have.get(n, [])) < max_seeds}
        return [n for n, k in counts.items() if k == min(counts.values())] if counts else []

    fed = [(c, feeders(c)) for c in open_ if c not in far]
    fed = [(c, f) for c, f in fed if f]
    if not fed:
        return {}, f"{len(open_)} claim(s) still open{later}; every configuration the others need has {max_seeds} seeds (--max-seeds)"
    fed.sort(key=lambda cf: sum((minutes or {}).get(n, 1.0) for n in cf[1]))
    chosen: list[str] = []
    for _, names in fed:
        chosen += [n for n in names if n not in chosen]
        if len(chosen) >= workers:
            break
    per = max(1, math.ceil(workers / len(chosen)))
    out = {}
    for name in chosen:
        start = max(have.get(name, [-1]), default=-1) + 1
        out[name] = list(range(start, min(start + per, max_seeds)))
    return out, f"{len(open_)} claim(s) open family-wise{later}; adding seeds to {', '.join(chosen)}"
