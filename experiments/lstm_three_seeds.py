"""The three-seed comparison of `lstm-plus` with `dense-encoder` and `mlp-vae` in docs/evaluation.md.

    python experiments/lstm_three_seeds.py

Seeds 0 and 1 come from the GPU study (docs/results/h200/lstm.json), seed 2 from the CPU runs
(docs/results/cpu/lstm_seed2.json); the intervals and verdicts are the study's own
(`mnist_vae.stats`).
"""

from __future__ import annotations

import json
from pathlib import Path

from mnist_vae.stats import interval, paired, verdict
from mnist_vae.stats.sequential import seeds_for_power

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
CONFIGS = ("lstm-plus", "dense-encoder", "mlp-vae")


def main() -> None:
    rows = json.loads((RESULTS / "h200" / "lstm.json").read_text())["rows"]
    rows += json.loads((RESULTS / "cpu" / "lstm_seed2.json").read_text())["rows"]
    by: dict[str, dict[int, dict]] = {}
    for r in rows:
        by.setdefault(r["config"], {})[r["seed"]] = r
    print("| configuration | seeds | NLL | test −ELBO | active units |")
    print("|---|---|---|---|---|")
    for c in CONFIGS:
        seeds = sorted(by[c])
        nll, elbo = interval([by[c][s]["nll"] for s in seeds]), interval([by[c][s]["elbo"] for s in seeds])
        per_seed = ", ".join(f"{by[c][s]['nll']:.2f}" for s in seeds)
        units = ", ".join(str(by[c][s]["active_units"]) for s in seeds)
        print(f"| `{c}` | {len(seeds)} | {nll.text()} ({per_seed}) | {elbo.text()} | {units} |")
    print()
    for ref in CONFIGS[1:]:
        for key in ("nll", "elbo"):
            iv = paired({s: r[key] for s, r in by["lstm-plus"].items()}, {s: r[key] for s, r in by[ref].items()})
            v = verdict(iv, "less")
            more = f" (about {seeds_for_power(iv)} seeds in all would give 80% power)" if v == "inconclusive" else ""
            print(f"lstm-plus − {ref}, {key}: {iv.mean:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}] over {iv.n} seeds: {v}{more}")


if __name__ == "__main__":
    main()
