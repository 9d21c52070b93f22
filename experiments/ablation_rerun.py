"""The encoder screen's top variants re-run through `mnist-vae study --screen`, beside the screen's own numbers.

    python experiments/ablation_rerun.py STUDY/study.json [--screen docs/ablation/screen_gpu.jsonl]

The screen (docs/ablation/screen_gpu.md) ran on a copy of the model, since deleted; the re-run is
the shipped code, each variant written as a configuration (`lstm-plus[...]`). For each variant this
prints the NLL of both (mean ± 95% half-width over seeds, the study's statistics), the paired NLL
difference against `optimized` in each, and whether the re-run's mean lies inside the screen's
interval (or, for a one-seed screen row, within the re-run's own interval).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mnist_vae.stats import Interval, interval, paired

#: Screen variant name -> the configuration that is the same model in the product.
SAME = {
    "optimized": "optimized",
    "all": "lstm-plus",
    "all-d256": "lstm-plus[encoder_hidden=[256]]",
    "h128-all-d256-cos": "lstm-plus[lstm_hidden=128,encoder_hidden=[256],lr_schedule=cosine]",
    "bi64-all-d256-cos": "lstm-plus[bidirectional=true,encoder_hidden=[256],lr_schedule=cosine]",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study")
    p.add_argument("--screen", default=str(Path(__file__).resolve().parents[1] / "docs" / "ablation" / "screen_gpu.jsonl"))
    args = p.parse_args()
    rows = json.loads(Path(args.study).read_text(encoding="utf-8"))["rows"]
    screen = [json.loads(line) for line in Path(args.screen).read_text(encoding="utf-8").splitlines() if line.strip()]
    nll_rerun = {(r["config"], r["seed"]): r["nll"] for r in rows}
    nll_screen = {(r["variant"], r["seed"]): r["nll"] for r in screen if r.get("status") == "ok"}
    print("| screen variant | as a configuration | screen NLL (GPU, copy) | re-run NLL (this CPU, product) | "
          "screen Δ vs optimized | re-run Δ vs optimized | re-run mean inside the screen's interval? |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for variant, config in SAME.items():
        s = interval([v for (n, _), v in nll_screen.items() if n == variant])
        r = interval([v for (n, _), v in nll_rerun.items() if n == config])
        ds = paired(
            {k: v for (n, k), v in nll_screen.items() if n == variant}, {k: v for (n, k), v in nll_screen.items() if n == "optimized"}
        )
        dr = paired({k: v for (n, k), v in nll_rerun.items() if n == config}, {k: v for (n, k), v in nll_rerun.items() if n == "optimized"})
        inside = "yes" if s.lo <= r.mean <= s.hi else "no"
        delta = "—" if variant == "optimized" else None
        print(f"| {variant} | `{config}` | {s.text()} (n={s.n}) | {r.text()} (n={r.n}) | "
              f"{delta or _diff(ds)} | {delta or _diff(dr)} | {inside} |")  # fmt: skip


def _diff(iv: Interval) -> str:
    return f"{iv.mean:+.2f}" if iv.n < 2 else f"{iv.mean:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}] (n={iv.n})"


if __name__ == "__main__":
    main()
