"""Side by side: the real product alone and two of its processes at once, as a user runs them.

    python experiments/side_by_side.py                     # fast-lr, 3 epochs; as shipped, then with the cure off
    python experiments/side_by_side.py --epochs 2 --variants shared
    python experiments/side_by_side.py --epochs 2 --variants shared,before --scenarios train+train,train+nice-loop --rounds 3

Every process is ``mnist-vae train`` / ``evaluate`` / ``study`` in a subprocess with the default
thread setting. Images/second come from each run's own ``metrics.jsonl`` (its training loop's
clock); the benchmark stamps each line as it appears, so that an epoch counts as "side by side"
only if it ran entirely while the other process was computing (between the other's first and
last epoch of training, or inside the other's evaluation). An evaluation's throughput is its own
``eval_seconds`` (from ``eval.json``), alone against beside a training.

"vs alone" adds up each process's throughput as a share of what the same command does alone
(train+train: the two rates over one alone; train+evaluate: train's share + evaluate's;
study+train: the study's training epochs and the training's, over one training alone: the study
trains the same configuration), so 1.00× means the machine does as much work with the two as with
one, 0.50× half. In train+evaluate and study+train the partner (a training of many epochs, a
study of many seeds) starts first and is killed once the measured process is done.

Priorities: ``train+nice-loop`` trains beside a ``nice -n 19`` busy loop (a niced backup, an
indexer: one core's worth of work outside the registry, started before the training and stopped
after it) of the same session; its figure is the training's speed over its speed alone, which the
kernel keeps near 1.00× when the product leaves the loop what the kernel would give it.
``train+nice-loop-elsewhere`` starts the loop in a session of its own (another terminal, a
service): where the kernel has autogroups on, each session gets its share of the CPU whatever its
nice values, so the loop takes a core and the training can at best keep the other.
``nice-study+train`` is study+train with the study at nice 19: the training should keep its speed
alone, the study take what is left. Every product process runs in the benchmark's session (a
process group of its own, so that it can be stopped with its workers), as from one terminal.

Variants: ``shared`` is the product as shipped; ``before`` sets ``MNIST_VAE_NO_SHARE=1`` and leaves
every process at one thread per core (the behaviour before the cure, mnist_vae/runtime/share.py);
``spin-only`` is ``before`` with libgomp's spin bounded (``GOMP_SPINCOUNT``, a lever tried and
rejected); ``passive`` is ``before`` with ``OMP_WAIT_POLICY=PASSIVE``, the setting a user could
have found. The benchmark clears the OpenMP variables of its own environment for every variant.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from machine_load import IDLE_BELOW
from side_by_side_report import machine, summarize, table
from side_by_side_runs import SCENARIOS, VARIANTS, Settings, run


def measure(
    settings: Settings, variants: list[str], scenarios: list[str], rounds: int, out: Path, wait_s: float = 600, retries: int = 2
) -> int:
    """Measure, print the table, write ``out`` (JSON)."""
    unknown = [s for s in scenarios if s not in SCENARIOS] + [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown scenario or variant: {', '.join(unknown)}")
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores; {settings.config}, {settings.epochs} epochs, {settings.precision}")
    raw = run(settings, variants, scenarios, rounds, wait_s, retries)
    summary = summarize(raw["results"])
    counted = [n for sc in raw["results"].values() for r in sc.values() for ns in r.get("epochs_counted", []) for n in ns]
    if any(n <= 0 for n in counted):
        print("warning: some epochs did not run entirely side by side (too short to time stamp); use more --epochs")
    outside = [x for sc in raw["results"].values() for r in sc.values() for x in r.get("outside_cores", []) if x is not None]
    if outside and max(outside) >= IDLE_BELOW:
        print(f"warning: other processes were busy during some measurements (up to {max(outside):.2f} cores; outside_cores in the JSON)")
    print()
    print(table(summary))
    if "before" in summary:
        # Against today's speed alone, which is what a user compares with.
        before = summary["before"]["train"]["total_img_s"]
        print()
        for v, rows in summary.items():
            if v != "before":
                pairs = [f"{n} {r['total_img_s'] / before:.2f}×" for n, r in rows.items() if "total_img_s" in r and n != "train"]
                print(
                    f"{v}, against before's train alone: train alone {rows['train']['total_img_s'] / before:.3f}×"
                    + "".join(f"; {p}" for p in pairs)
                )
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": m,
        "settings": vars(settings) | {"rounds": rounds, "variants": variants, "scenarios": scenarios, "wait_s": wait_s, "retries": retries},
        "summary": summary,
        **raw,
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python experiments/side_by_side.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="fast-lr", help="the configuration trained (default: fast-lr)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per training; the first is warm-up, the median of the rest is reported")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="autocast precision of the trainings")
    p.add_argument(
        "--variants",
        default="shared,before",
        help="shared (as shipped), before (MNIST_VAE_NO_SHARE=1: the cure off), spin-only (before + GOMP_SPINCOUNT=100000), "
        "passive (before + OMP_WAIT_POLICY=PASSIVE)",
    )
    p.add_argument(
        "--scenarios",
        default="train+train,train+evaluate,study+train",
        help=f"{', '.join(SCENARIOS[1:])} (train alone always runs)",
    )
    p.add_argument("--rounds", type=int, default=1, help="repeats of everything, variants alternating; medians are reported")
    p.add_argument("--wait-idle", type=float, default=600, help="seconds to wait for an idle machine before each measurement (0: don't)")
    p.add_argument("--retries", type=int, default=2, help="measure again when other processes were busy meanwhile, up to this often")
    p.add_argument("--data-path", help="train on this IDX folder or .npz instead of the embedded digits")
    p.add_argument("--eval-k", type=int, default=100, help="importance samples of the evaluation")
    p.add_argument("--eval-samples", type=int, default=1000, help="generated samples the evaluation judges")
    p.add_argument("--out", default="side_by_side.json", help="where to write the figures (default: side_by_side.json)")
    return p


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, measure, print the table, write the JSON."""
    args = _parser().parse_args(argv)
    data = ["--data-path", args.data_path] if args.data_path else ["--dataset", "embedded"]
    settings = Settings(args.config, args.epochs, args.precision, data, args.eval_k, args.eval_samples)
    return measure(settings, _names(args.variants), _names(args.scenarios), args.rounds, Path(args.out), args.wait_idle, args.retries)


if __name__ == "__main__":
    raise SystemExit(main())
