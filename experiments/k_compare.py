"""Does the study's K (importance samples of the NLL) change a ranking or a verdict? Two studies of the same runs.

    python experiments/k_compare.py STUDY_K1000/study.json STUDY_K200/study.json [--against optimized]

Both study.json files must cover the same runs (the second made by copying the first's runs/ into a
new study folder and running the same `mnist-vae study` command with another --k: the runs are
trained, so only the evaluation is redone). Prints each configuration's NLL under both K, the
ranking under each, and the paired NLL difference of every configuration against one of them with
its 95% interval and verdict under each K (the study's own statistics).
"""

from __future__ import annotations

import argparse
import json

from mnist_vae.stats import paired, verdict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--against", default="optimized")
    args = p.parse_args()
    studies = [json.load(open(path, encoding="utf-8")) for path in (args.a, args.b)]
    ks = [s["meta"]["k"] for s in studies]
    nll = [{(r["config"], r["seed"]): r["nll"] for r in s["rows"]} for s in studies]
    assert nll[0].keys() == nll[1].keys(), "the two studies must cover the same runs"
    names = list(dict.fromkeys(c for c, _ in nll[0]))
    print(f"| configuration | NLL, K = {ks[0]} | NLL, K = {ks[1]} | K = {ks[1]} − K = {ks[0]}, mean over seeds |")
    print("|---|---|---|---|")
    means = []
    for n in names:
        m = [sum(v for (c, _), v in d.items() if c == n) / sum(1 for c, _ in d if c == n) for d in nll]
        means.append(m)
        print(f"| {n} | {m[0]:.2f} | {m[1]:.2f} | {m[1] - m[0]:+.2f} |")
    ranks = [sorted(names, key=lambda n: means[names.index(n)][i]) for i in (0, 1)]
    print(f"\nranking, K = {ks[0]}: {' < '.join(ranks[0])}")
    print(f"ranking, K = {ks[1]}: {' < '.join(ranks[1])}  ({'the same' if ranks[0] == ranks[1] else 'DIFFERENT'})\n")
    print(f"| configuration − {args.against} | K = {ks[0]} | verdict | K = {ks[1]} | verdict |")
    print("|---|---|---|---|---|")
    for n in names:
        if n == args.against:
            continue
        cells = []
        for d in nll:
            a = {s: v for (c, s), v in d.items() if c == n}
            b = {s: v for (c, s), v in d.items() if c == args.against}
            iv = paired(a, b)
            cells += [f"{iv.mean:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}]", verdict(iv, "differs")]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
