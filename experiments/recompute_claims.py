"""Recompute a finished study's claim table with today's procedures, beside the verdicts it printed then.

    python experiments/recompute_claims.py docs/results/cpu/settled_study.json

No training: the per-seed rows in study.json go through ``mnist_vae.study.claims.evaluate_claims`` (the code a
report uses). Prints a Markdown table that marks every row whose verdict or family-wise view changed, and the
headline counts before and after.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mnist_vae.study.claim_table import SETTLED
from mnist_vae.study.claims import evaluate_claims


def _why(old: dict, new: dict) -> str:
    """Why a row changed, in a few words."""
    if new["procedure"].startswith("anytime-valid betting"):
        if old.get("effect") and old["effect"]["lo"] == old["effect"]["hi"]:
            return "tied values: the old interval had width zero; a bounded measure now gets the betting sequence"
        return "a bounded measure: the betting sequence assumes nothing about the values' shape, and is wider"
    if old.get("holm") != new.get("holm"):
        return "family-wise view changed with the other rows' p-values"
    return "—"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_json", type=Path)
    args = p.parse_args()
    study = json.loads(args.study_json.read_text(encoding="utf-8"))
    new = evaluate_claims(study["rows"], sequential=bool(study["meta"].get("sequential")))
    old = {(c["claim"], c["measure"]): c for c in study["claims"]}
    print(
        "| | configuration | claim | then: effect, verdict, Holm | now: effect [95% interval], verdict, Holm | procedure now | why it changed |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in new:
        o = old[(c["claim"], c["measure"])]
        changed = o["verdict"] != c["verdict"] or o.get("holm") != c.get("holm")
        then = f"{o.get('text', '—')}, {o['verdict']}, {o.get('holm', '—')}"
        now = f"{c.get('text', '—')}, {c['verdict']}, {c.get('holm', '—')}"
        print(
            f"| {'**changed**' if changed else ''} | {c['config']} | {c['claim']} | {then} | {now} | {c['procedure']} | {_why(o, c) if changed else ''} |"
        )
    for name, claims in (("then", list(old.values())), ("now", new)):
        per = sum(c["verdict"] in SETTLED for c in claims)
        fam = sum(c["verdict"] in SETTLED and c.get("holm") == "holds" for c in claims)
        print(f"{name}: {per} settled per claim, {fam} of them hold family-wise (Holm), of {len(claims)}")


if __name__ == "__main__":
    main()
