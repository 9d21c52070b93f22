"""``mnist-vae evaluate``, ``classifier train`` and ``study``."""

from __future__ import annotations

import argparse

from ..config import BINARIZE_MODES, EVAL_PRECISIONS, PRECISIONS, STUDY_EVAL, STUDY_TRAIN_PRECISION, EvalConfig
from ..errors import ConfigError
from ..study.executors import EXECUTORS
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
    print(f"wrote {args.run}/eval.json ({result['eval_seconds']:.1f} s)")
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


def cmd_study(args: argparse.Namespace) -> int:
    from ..study.runner import run_study

    result = run_study(
        split_specs(args.configs) if args.configs else None,
        seeds=args.seeds,
        epochs=args.epochs,
        settings=eval_settings(args),
        dataset=args.dataset,
        data_path=args.data_path or "",
        binarize=args.binarize,
        jobs=args.jobs,
        out=args.out,
        threads=args.threads,
        executor=args.executor,
        scheduler=args.scheduler,
        device=args.device,
        train_precision=args.train_precision,
        report_only=args.report_only,
        estimate_only=args.estimate,
    )
    if args.estimate:
        return 0
    print(result["report_md"].read_text(encoding="utf-8"))
    print(f"wrote {result['report_md']} and {result['report_html']} in {result['meta']['wall_seconds']:.0f} s")
    return 0


def split_specs(text: str) -> list[str]:
    """``a,b[x=1,y=2],c`` -> ["a", "b[x=1,y=2]", "c"]: commas inside brackets belong to the spec."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [c.strip() for c in [*out, cur] if c.strip()]


def _eval_options(p: argparse.ArgumentParser, precision: str, precision_help: str) -> None:
    p.add_argument(
        "--k", type=int, default=DEFAULTS.k, help="importance samples per test image for the NLL (5000 = the published protocol)"
    )
    p.add_argument(
        "--chunk", type=int, default=DEFAULTS.chunk, help="latent codes decoded at once in the NLL (bounds memory; small is fast on CPU)"
    )
    p.add_argument("--samples", type=int, default=DEFAULTS.n_samples, help="generated samples judged by the digit classifier")
    p.add_argument("--precision", choices=EVAL_PRECISIONS, default=precision, help=precision_help)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed for the importance samples and the generated samples")


def add_commands(add: Adder) -> None:
    """Register ``evaluate``, ``classifier`` and ``study``."""
    p = add(
        "evaluate",
        cmd_evaluate,
        "measure a run: ELBO terms, importance-weighted NLL, active units, latent probe, "
        "sample quality; prints a table and writes RUN/eval.json",
        log_stream="stderr",
    )
    p.add_argument("run", metavar="RUN", help="a run folder")
    _eval_options(
        p, DEFAULTS.precision, "decoder precision for the NLL (bf16: faster where native, ~0.01 nat off; auto: bf16 where native)"
    )
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

    p = add("study", cmd_study, "train and evaluate several configurations and write STUDY/report.md and report.html", log_stream="stderr")
    p.add_argument(
        "--configs",
        help="comma-separated configurations: names, or NAME[key=value,...] for a preset with fields "
        "changed (default: the write-up's seven, the mlp-vae reference and lstm-plus)",
    )
    p.add_argument("--seeds", type=int, default=3, help="training seeds per configuration (0..N-1); findings are paired by seed")
    p.add_argument("--epochs", type=int, default=50, help="epochs per configuration")
    _eval_options(
        p, STUDY_EVAL.precision, "decoder precision for the NLL (auto: bf16 where the hardware computes it natively, fp32 elsewhere)"
    )
    add_dataset_options(p, default="auto")
    p.add_argument("--binarize", choices=BINARIZE_MODES, default="none", help="pixel binarization")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel on this machine (cores are split between them)")
    p.add_argument("--threads", type=int, help="CPU threads per job (default: cores // jobs)")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="local processes, or a Dask cluster (needs mnist-vae[dask])")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler's address (with --executor dask)")
    p.add_argument("--device", default="cpu", help="train and evaluate on: cpu, cuda, cuda:N, mps or auto")
    p.add_argument(
        "--train-precision",
        dest="train_precision",
        choices=PRECISIONS,
        default=STUDY_TRAIN_PRECISION,
        help="training precision of every configuration (auto: bf16 where the hardware computes it natively, fp32 elsewhere; "
        "docs/performance.md has the paired-seed evidence behind this default)",
    )
    p.add_argument("--out", default="study", help="study folder (every Dask worker must reach it)")
    p.add_argument("--report-only", action="store_true", help="train nothing: write the report from the runs already evaluated")
    p.add_argument("--estimate", action="store_true", help="print the estimated time of every run (timed on a few steps here) and stop")
