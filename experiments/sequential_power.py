"""Error rate and power of the study's sequential verdicts, by simulation (docs/evaluation.md).

    python experiments/sequential_power.py [--sims 4000] [--max-seeds 20]

Each simulated study starts with 3 seeds, looks after every added seed and stops at its first
verdict, with the shipped procedures: ``mnist_vae.stats.sequential.confidence_sequence`` (what
``study --until-settled`` uses) and, for comparison, the fixed-n t-interval re-tested at every look.
Prints the share of false verdicts when the true effect is exactly at the threshold (normal and
Student-t(3) per-seed values) and the power (share settled on the right side) at true effects of
0.5, 1 and 2 standard deviations.
"""

from __future__ import annotations

import argparse

import numpy as np

from mnist_vae.stats import interval, verdict
from mnist_vae.stats.sequential import confidence_sequence


def settle(row: np.ndarray, first: int, make) -> tuple[str, int]:
    """The first verdict of a study looking after every seed, and the seeds it took."""
    for n in range(first, len(row) + 1):
        v = verdict(make(row[:n].tolist()), "greater", 0.0)
        if v in ("supported", "contradicted"):
            return v, n
    return "inconclusive", len(row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sims", type=int, default=4000)
    p.add_argument("--max-seeds", type=int, default=20)
    p.add_argument("--first", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.sims} simulated studies, {args.first} seeds first, a look after every added seed, at most {args.max_seeds}")
    print("| true effect (sd) | per-seed values | procedure | false verdicts | supported | mean seeds at stop |")
    print("|---|---|---|---|---|---|")
    for effect in (0.0, 0.5, 1.0, 2.0):
        for kind in ("normal", "t(3)") if effect == 0 else ("normal",):
            data = effect + (
                rng.normal(0, 1, (args.sims, args.max_seeds)) if kind == "normal" else rng.standard_t(3, (args.sims, args.max_seeds))
            )
            for name, make in (("anytime-valid (until-settled)", confidence_sequence), ("fixed-n t, re-tested each look", interval)):
                out = [settle(row, args.first, make) for row in data]
                wrong = np.mean([v == "contradicted" or (effect == 0 and v == "supported") for v, _ in out])
                hits = np.mean([v == "supported" for v, _ in out])
                seeds = np.mean([n for _, n in out])
                print(f"| {effect:g} | {kind} | {name} | {wrong:.3f} | {hits:.3f} | {seeds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
