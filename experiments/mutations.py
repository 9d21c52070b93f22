"""Break the verdict procedures on purpose and check that the tests notice (issue 26's six mutations, and more).

    python experiments/mutations.py [--only NAME] [--json out.json]

Each mutation is a text substitution in a copy of ``src/``; the statistics tests run against that copy
(``PYTHONPATH``) and the tests that fail are listed. A mutation that no test catches is a hole in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_sequential.py", "tests/test_claims.py"]

#: name -> [(file under src/mnist_vae, old text, new text), ...]; every substitution must match.
MUTATIONS: dict[str, list[tuple[str, str, str]]] = {
    "threshold 1/(2α), applied consistently (t-mixture)": [
        ("stats/sequential.py", "(2.0 / n) * (math.log(1 / alpha)", "(2.0 / n) * (math.log(1 / (2 * alpha))"),
    ],
    "threshold 1/α instead of 2/α per side (betting)": [
        ("stats/betting.py", "math.log(2 / alpha), 0.0, 1.0", "math.log(1 / alpha), 0.0, 1.0"),
        ("stats/betting.py", "return min(1.0, 2.0 * math.exp(", "return min(1.0, 1.0 * math.exp("),
    ],
    "degrees of freedom n instead of n - 1": [
        ("stats/sequential.py", "nu, ng = np.maximum(n - 1, 1.0), n * g", "nu, ng = n, n * g"),
        ("stats/sequential.py", "    nu, ng = n - 1, n * g\n    if math.isinf(t):", "    nu, ng = n, n * g\n    if math.isinf(t):"),
        ("stats/sequential.py", "    nu, ng = n - 1, n * g\n    a = ", "    nu, ng = n, n * g\n    a = "),
    ],
    "the population sd": [
        ("stats/sequential.py", "sd = np.sqrt(np.maximum(m2, 0.0) / (n - 1))", "sd = np.sqrt(np.maximum(m2, 0.0) / n)"),
    ],
    "no running intersection (t-mixture)": [
        (
            "stats/sequential.py",
            "        if max(lo, mean[k] - half) > min(hi, mean[k] + half):\n            break",
            "        if False:\n            break",
        ),
        ("stats/sequential.py", "lo, hi = max(lo, mean[k] - half), min(hi, mean[k] + half)", "lo, hi = mean[k] - half, mean[k] + half"),
    ],
    "no running maximum (betting)": [
        ("stats/betting.py", "plus = np.maximum.accumulate(np.cumsum(", "plus = _unchanged(np.cumsum("),
        ("stats/betting.py", "minus = np.maximum.accumulate(np.cumsum(", "minus = _unchanged(np.cumsum("),
        ("stats/betting.py", "def stakes(", "def _unchanged(a, axis=-1):\n    return a\n\n\ndef stakes("),
    ],
    "anytime_p replaced by the fixed-n p": [
        (
            "stats/sequential.py",
            "    return min(1.0, math.exp(-float(np.max(log_bf_looks(",
            "    return fixed_p(vals, threshold)\n    return min(1.0, math.exp(-float(np.max(log_bf_looks(",
        ),
    ],
    "a verdict that ignores the claim's threshold": [
        ("study/claims.py", '"verdict": verdict(iv, claim.direction, claim.threshold)', '"verdict": verdict(iv, claim.direction)'),
    ],
    "tied values give infinite evidence (the old defect)": [
        ("stats/sequential.py", "out = np.where(tied & away, 0.5 * nu * np.log1p(ng)", "out = np.where(tied & away, np.inf"),
    ],
    "Holm replaced by per-claim verdicts in the headline's column": [
        (
            "study/claims.py",
            "rejected = dict(zip(hypotheses, holm([out[i][key] for i, key in hypotheses], groups=[i for i, _ in hypotheses])))",
            "rejected = dict(zip(hypotheses, [out[i][key] <= 0.05 for i, key in hypotheses]))",
        ),
    ],
}


def run(name: str, subs: list[tuple[str, str, str]], tests: list[str]) -> list[str]:
    """The tests that fail with the mutation applied to a copy of src/."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "src", Path(tmp) / "src")
        for rel, old, new in subs:
            path = Path(tmp) / "src" / "mnist_vae" / rel
            text = path.read_text(encoding="utf-8")
            if text.count(old) != 1:
                raise SystemExit(f"{name}: {rel}: the text to mutate occurs {text.count(old)} times: {old!r}")
            path.write_text(text.replace(old, new), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
                              cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
        check = subprocess.run(
            [sys.executable, "-c", "import mnist_vae, sys; print(mnist_vae.__file__)"], env=env, capture_output=True, text=True
        )
        assert check.stdout.startswith(tmp), f"the mutated copy was not imported: {check.stdout}"
    if re.search(r"^ERROR ", proc.stdout, flags=re.M):
        raise SystemExit(f"{name}: the mutated code does not import or a test errors; fix the mutation:\n{proc.stdout[-2000:]}")
    return re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="run the mutations whose name contains this text")
    p.add_argument("--slow", action="store_true", help="also run the whole-study simulation (tests/test_family_wise.py)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    tests = [*TESTS, "tests/test_family_wise.py"] if args.slow else [*TESTS, "-m", "not slow"]
    out = {}
    for name, subs in MUTATIONS.items():
        if args.only and args.only not in name:
            continue
        failed = run(name, subs, tests)
        out[name] = failed
        print(f"{name}: {'CAUGHT by ' + ', '.join(failed) if failed else 'NOT CAUGHT'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    if not all(out.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
