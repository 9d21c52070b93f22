"""CLI commands ``evaluate``, ``classifier train`` and ``study`` (registered by :func:`add_commands`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from .errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _threads(n: int | None) -> None:
    if n is not None:
        from .train import set_threads

        set_threads(n)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run, format_eval

    _threads(args.threads)
    if args.k < 1 or args.chunk < 1 or args.samples < 2:
        raise ConfigError("--k and --chunk must be >= 1 and --samples >= 2")
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=None, desc=f"NLL K={args.k}", unit="img", leave=False, file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        result = evaluate_run(args.run, k=args.k, chunk=args.chunk, seed=args.seed, n_samples=args.samples,
                              precision=args.precision, log=_log, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print(format_eval(result))
    print(f"wrote {args.run}/eval.json ({result['eval_seconds']:.1f} s)")
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from .classifier import MIN_ACCURACY, cache_path, get_classifier
    from .data import load_dataset

    _threads(args.threads)
    ds = load_dataset(args.dataset, args.data_path, log=_log)
    clf = get_classifier(ds, retrain=args.force, log=_log)
    print(f"classifier for {ds.name} (sha256 {ds.sha256[:16]}): test accuracy {clf.test_accuracy:.4f} "
          f"(required {MIN_ACCURACY:.2f}); train-vs-test Fréchet floor {clf.floor_frechet:.3f}; "
          f"trained in {clf.train_seconds:.1f} s; {cache_path(ds)}")
    return 0 if clf.test_accuracy >= MIN_ACCURACY else 1


def cmd_study(args: argparse.Namespace) -> int:
    from .study import run_study

    configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else None
    result = run_study(configs, epochs=args.epochs, k=args.k, dataset=args.dataset, data_path=args.data_path or "",
                       binarize=args.binarize, seed=args.seed, jobs=args.jobs, out=args.out, n_samples=args.samples,
                       chunk=args.chunk, precision=args.precision, threads=args.threads, log=_log)
    print(result["report_md"].read_text(encoding="utf-8"))
    print(f"wrote {result['report_md']} and {result['report_html']} in {result['meta']['wall_seconds']:.0f} s")
    return 0


def _dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="auto", choices=["auto", "embedded", "mnist", "fashion-mnist"],
                   help="dataset (auto: full MNIST if cached or downloadable, else the embedded digits)")
    p.add_argument("--data-path", dest="data_path", help="a folder of IDX files or a Keras-style mnist.npz")


def add_commands(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``evaluate``, ``classifier`` and ``study`` on the main parser's subcommands."""
    p = add("evaluate", cmd_evaluate, "measure a run: ELBO terms, importance-weighted NLL, active units, latent probe, "
            "sample quality; prints a table and writes RUN/eval.json")
    p.add_argument("run", metavar="RUN", help="a run folder")
    p.add_argument("--k", type=int, default=1000, help="importance samples per test image (5000 = the published protocol)")
    p.add_argument("--chunk", type=int, default=256, help="latent codes decoded at once (bounds memory; small is fast on CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed for the importance samples and the generated samples")
    p.add_argument("--samples", type=int, default=10000, help="generated samples judged by the digit classifier")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="decoder precision for the NLL (bf16: faster, ~0.01 nat off)")
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add("classifier", cmd_classifier, "the digit classifier that judges samples; `classifier train` fits and caches it")
    p.add_argument("action", choices=["train"], help="train: fit it (or report the cached one)")
    _dataset_options(p)
    p.add_argument("--force", action="store_true", help="retrain even if a cached classifier exists")
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")

    p = add("study", cmd_study, "train and evaluate several configurations and write STUDY/report.md and report.html")
    p.add_argument("--configs", help="comma-separated configuration names (default: all seven)")
    p.add_argument("--epochs", type=int, default=50, help="epochs per configuration")
    p.add_argument("--k", type=int, default=1000, help="importance samples per test image for the NLL")
    p.add_argument("--chunk", type=int, default=256, help="latent codes decoded at once in the NLL")
    p.add_argument("--samples", type=int, default=10000, help="generated samples per configuration")
    p.add_argument("--precision", choices=PRECISIONS, default="bf16",
                   help="decoder precision for the NLL (bf16 keeps the full study within its time budget)")
    _dataset_options(p)
    p.add_argument("--binarize", choices=["none", "static", "dynamic"], default="none", help="pixel binarization")
    p.add_argument("--seed", type=int, default=0, help="seed shared by every configuration")
    p.add_argument("--jobs", type=int, default=1, help="configurations trained in parallel (cores are split between them)")
    p.add_argument("--threads", type=int, help="CPU threads per job (default: cores // jobs)")
    p.add_argument("--out", default="study", help="study folder")
