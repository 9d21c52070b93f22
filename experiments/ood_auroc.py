"""How well does a model's NLL tell digits from clothing? AUROC of the NLL, embedded test digits against Fashion-MNIST.

The images are scored by ``mnist_vae.evaluation.score.score_files``, the function behind
``mnist-vae score``: the digits and the clothes are written as two ``.npy`` files and scored exactly
as ``mnist-vae score --pretrained NAME digits.npy clothes.npy --k K --seed S`` would score them.
The AUROC is the probability that a random piece of clothing gets a higher NLL than a random digit
(ties count half; Mann-Whitney). Fashion-MNIST comes from ``apt-get install dataset-fashion-mnist``
(or ``--fashion DIR``).

    python experiments/ood_auroc.py --models lstm-plus,mlp-vae --n 500 --k 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnist_vae.data import load_dataset
from mnist_vae.data.datasets import load_fashion_mnist
from mnist_vae.evaluation.score import score_files
from mnist_vae.io import atomic_write_text
from mnist_vae.runs.pretrained import open_pretrained

FASHION_CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (the Mann-Whitney U over n_neg * n_pos)."""
    both = np.concatenate([negative, positive])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based ranks, averaged over ties
    u = ranks[len(negative) :].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(negative) * len(positive)))


def pick(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images chosen by a seeded permutation (all of them when n is larger)."""
    idx = np.random.default_rng(seed).permutation(len(images))[:n]
    return images.numpy()[idx], labels.numpy()[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="lstm-plus,mlp-vae", help="shipped models (comma-separated)")
    ap.add_argument("--n", type=int, default=500, help="images of each kind (test splits; seeded choice)")
    ap.add_argument("--k", type=int, default=100, help="importance samples per image")
    ap.add_argument("--seed", type=int, default=0, help="seed of the choice of images and of the scores")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads")
    ap.add_argument("--fashion", help="a folder with Fashion-MNIST's IDX files (default: where the package looks)")
    ap.add_argument("--out", help="also write the figures to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    digits_ds = load_dataset("embedded", download=False)
    fashion_ds = load_fashion_mnist(args.fashion)
    digits, digit_labels = pick(digits_ds.test_images, digits_ds.test_labels, args.n, args.seed)
    clothes, clothes_labels = pick(fashion_ds.test_images, fashion_ds.test_labels, args.n, args.seed)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "digits": {"dataset": "embedded test split", "sha256": digits_ds.sha256, "n": len(digits)},
        "clothes": {"dataset": "fashion-mnist test split", "sha256": fashion_ds.sha256, "n": len(clothes)},
        "k": args.k,
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / "digits.npy", Path(tmp) / "clothes.npy"]
        np.save(files[0], digits)
        np.save(files[1], clothes)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            run = open_pretrained(name)
            t0 = time.perf_counter()
            result = score_files(run.model, files, k=args.k, seed=args.seed)
            seconds = time.perf_counter() - t0
            if result.failures:
                sys.exit(f"error: {result.failures[0][0]}: {result.failures[0][1]}")
            nll = np.array([r["nll"] for r in result.rows])
            neg_elbo = np.array([r["neg_elbo"] for r in result.rows])
            d, c = slice(0, len(digits)), slice(len(digits), None)
            per_class = {
                FASHION_CLASSES[k]: round(auroc(nll[d], nll[c][clothes_labels == k]), 4) for k in range(10) if (clothes_labels == k).any()
            }
            entry: dict[str, Any] = {
                "auroc_nll": auroc(nll[d], nll[c]),
                "auroc_neg_elbo": auroc(neg_elbo[d], neg_elbo[c]),
                "nll_digits": {"mean": float(nll[d].mean()), "median": float(np.median(nll[d]))},
                "nll_clothes": {"mean": float(nll[c].mean()), "median": float(np.median(nll[c]))},
                "auroc_nll_per_clothing_class": per_class,
                "seconds": round(seconds, 1),
            }
            report["models"][name] = entry
            print(
                f"{name}: AUROC of the NLL {entry['auroc_nll']:.6f} (of the -ELBO {entry['auroc_neg_elbo']:.6f}); "
                f"NLL mean / median: digits {entry['nll_digits']['mean']:.1f} / {entry['nll_digits']['median']:.1f}, "
                f"clothes {entry['nll_clothes']['mean']:.1f} / {entry['nll_clothes']['median']:.1f} nats; "
                f"{len(result.rows)} images in {seconds:.0f} s"
            )
            print("  per clothing class: " + ", ".join(f"{k} {v:.4f}" for k, v in per_class.items()))
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
