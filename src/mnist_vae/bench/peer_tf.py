"""The published TensorFlow code and `mnist-vae train --config original`, side by side, on one machine.

    python -m mnist_vae.bench.peer_tf [--epochs 3] [--threads 1] [--rounds 2] [--precision auto] [--out peer_tf.json]

Alternates the two programs (TF, product, TF, product, ...) at the same thread count on the same
8,000 embedded digits and prints each program's median images/s per round and the ratio
product / TF. The product trains with ``--precision auto`` (bf16 where the CPU has it natively,
fp32 elsewhere) unless ``--precision`` says otherwise; the published code is fp32. The TF side is `../shared/peers/seed_tf.py` from the project root (or `--script`) run by the Python of its
own environment (`--python`, default `~/.tfenv/bin/python`; its README says how to make it);
TensorFlow is never imported here. When that environment or script is missing, it says so and
exits 2 without measuring anything.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path.cwd()  # run from the project root, beside ../shared
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)/\d+\b.*?([\d.]+) img/s", re.M)


def run_tf(python: str, script: Path, epochs: int, threads: int) -> float:
    """Median images/s over the epochs of one run of the published code."""
    cmd = [python, str(script), "--epochs", str(epochs), "--threads", str(threads)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["img_per_s_median"])


def run_product(epochs: int, threads: int, precision: str = "auto") -> float:
    """Median images/s over the epochs of one `mnist-vae train --config original` run (a throw-away folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mnist_vae", "train", "--config", "original", "--dataset", "embedded", "--device", "cpu",
               "--epochs", str(epochs), "--threads", str(threads), "--precision", precision, "--out", f"{tmp}/run", "--no-progress"]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    rates = [float(m.group(2)) for m in EPOCH_LINE.finditer(done.stdout + done.stderr)]
    if not rates:
        raise RuntimeError("no 'epoch N/E ... img/s' line in the product's output")
    return statistics.median(rates)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default: 3)")
    p.add_argument("--threads", type=int, default=1, help="threads of both programs (default: 1)")
    p.add_argument("--rounds", type=int, default=2, help="TF-then-product rounds (default: 2)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="the product's precision (default: auto)")
    p.add_argument("--python", default=str(Path.home() / ".tfenv/bin/python"), help="the TF environment's Python")
    p.add_argument("--script", default=str(ROOT.parent / "shared/peers/seed_tf.py"), help="the published code's runner")
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args()
    for path, what in ((args.python, "--python (the TF environment)"), (args.script, "--script (seed_tf.py)")):
        if not Path(path).exists():
            print(f"peer_tf: {what} not found: {path}; nothing measured", file=sys.stderr)
            return 2
    rounds = []
    for r in range(args.rounds):
        tf = run_tf(args.python, Path(args.script), args.epochs, args.threads)
        ours = run_product(args.epochs, args.threads, args.precision)
        rounds.append({"tf_img_s": tf, "product_img_s": ours, "ratio": ours / tf})
        print(f"round {r + 1}: TF {tf:.1f} img/s, mnist-vae {ours:.1f} img/s, ratio {ours / tf:.2f}x", flush=True)
    ratio = statistics.median(x["ratio"] for x in rounds)
    print(f"median ratio over {len(rounds)} round(s), {args.threads} thread(s): {ratio:.2f}x")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {"threads": args.threads, "epochs": args.epochs, "precision": args.precision, "rounds": rounds, "ratio": ratio}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
