"""``mnist-vae evaluate`` and ``classifier train``."""

from __future__ import annotations

import argparse

from ..config import EVAL_PRECISIONS, EvalConfig
from ..errors import ConfigError
from .common import Adder, add_dataset_options, add_threads_option, set_threads_from

DEFAULTS = EvalConfig()


def eval_settings(args: argparse.Namespace) -> EvalConfig:
    """The EvalConfig the options describe (validated: bad values are one-line errors)."""
    try:
        return EvalConfig(k=args.k, chunk=args.chunk, n_samples=args.samples, precision=args.precision, seed=args.seed)
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.run import evaluate_run, format_eval

    set_threads_from(args)
    result = evaluate_run(args.run, eval_settings(args), progress=not args.no_progress, device=args.device)
    print(format_eval(result))
    print(f"wrote {args.run}/eval.json ({result.eval_seconds:.1f} s)")
    return 0


def cmd_classifier(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..evaluation.classifier import MIN_ACCURACY, cache_path, get_classifier

    set_threads_from(args)
    ds = load_dataset(args.dataset, args.data_path)
    clf = get_classifier(ds, retrain=args.force)
    print(
        f"classifier for {ds.name} (sha256 {ds.sha256[:16]}): test accuracy {clf.test_accuracy:.4f} "
        f"(required {MIN_ACCURACY:.2f}); train-vs-test Fréchet floor {clf.floor_frechet:.3f}; "
        f"trained in {clf.train_seconds:.1f} s; {cache_path(ds)}"
    )
    return 0 if clf.test_accuracy >= MIN_ACCURACY else 1


def eval_options(p: argparse.ArgumentParser, defaults: EvalConfig, precision_help: str) -> None:
    """The evaluation options, with ``defaults`` (``evaluate``'s, or the study's) as their defaults."""
    p.add_argument(
        "--k", type=int, default=defaults.k, help="importance samples per test image for the NLL (5000 = the published protocol)"
    )
    p.add_argument(
        "--chunk", type=int, default=DEFAULTS.chunk, help="latent codes decoded at once in the NLL (bounds memory; small is fast on CPU)"
    )
    p.add_argument("--samples", type=int, default=DEFAULTS.n_samples, help="generated samples judged by the digit classifier")
    p.add_argument("--precision", choices=EVAL_PRECISIONS, default=defaults.precision, help=precision_help)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed for the importance samples and the generated samples")


def add_commands(add: Adder) -> None:
    """Register ``evaluate`` and ``classifier``."""
    p = add(
        "evaluate",
        cmd_evaluate,
        "measure a run: ELBO terms, importance-weighted NLL, active units, latent probe, "
        "sample quality; prints a table and writes RUN/eval.json",
        log_stream="stderr",
    )
    p.add_argument("run", metavar="RUN", help="a run folder")
    eval_options(p, DEFAULTS, "decoder precision for the NLL (bf16: faster where native, ~0.01 nat off; auto: bf16 where native)")
    add_threads_option(p)
    p.add_argument(
        "--device", default="auto", help="where the model and the NLL run: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = add(
        "classifier", cmd_classifier, "the digit classifier that judges samples; `classifier train` fits and caches it", log_stream="stderr"
    )
    p.add_argument("action", choices=["train"], help="train: fit it (or report the cached one)")
    add_dataset_options(p, default="auto")
    p.add_argument("--force", action="store_true", help="retrain even if a cached classifier exists")
    add_threads_option(p)
