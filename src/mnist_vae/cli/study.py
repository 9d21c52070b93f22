"""``mnist-vae study``: configurations x training seeds, a report with intervals and the claim table."""

from __future__ import annotations

import argparse

from ..config import BINARIZE_MODES, PRECISIONS
from ..study.executors import EXECUTORS
from ..study.settings import STUDY_BINARIZE, STUDY_DEVICE, STUDY_EPOCHS, STUDY_EVAL, STUDY_TRAIN_PRECISION, StudySettings
from ..study.settle import parse_duration
from .common import Adder, add_dataset_options
from .evaluate import eval_options, eval_settings


def study_settings(args: argparse.Namespace) -> StudySettings:
    """The StudySettings the options describe (flags not given stay None: variants may set those fields)."""
    return StudySettings(
        configs=tuple(split_specs(args.configs)) if args.configs else (),
        seeds=args.seeds,
        epochs=args.epochs,
        binarize=args.binarize,
        device=args.device,
        train_precision=args.train_precision,
        eval=eval_settings(args),
        dataset=args.dataset,
        data_path=args.data_path or "",
        jobs=args.jobs,
        threads=args.threads,
        executor=args.executor,
        scheduler=args.scheduler,
        out=args.out,
        screen=args.screen,
        until_settled=args.until_settled,
        max_seeds=args.max_seeds,
        budget_s=parse_duration(args.budget) if args.budget else None,
    )


def cmd_study(args: argparse.Namespace) -> int:
    from ..study.runner import run_study

    result = run_study(study_settings(args), report_only=args.report_only, estimate_only=args.estimate)
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


def add_commands(add: Adder) -> None:
    """Register ``study``."""
    p = add("study", cmd_study, "train and evaluate several configurations and write STUDY/report.md and report.html", log_stream="stderr")
    p.add_argument(
        "--configs",
        help="comma-separated configurations: names, or NAME[key=value,...] for a preset with fields changed; a field "
        "set in brackets wins over the study's default for it (default: the write-up's seven, the mlp-vae reference and lstm-plus)",
    )
    p.add_argument("--seeds", type=int, default=3, help="training seeds per configuration (0..N-1); findings are paired by seed")
    p.add_argument("--epochs", type=int, help=f"epochs per configuration (default: {STUDY_EPOCHS})")
    eval_options(p, STUDY_EVAL, "decoder precision for the NLL (auto: bf16 where the hardware computes it natively, fp32 elsewhere)")
    add_dataset_options(p, default="auto")
    p.add_argument("--binarize", choices=BINARIZE_MODES, help=f"pixel binarization (default: {STUDY_BINARIZE})")
    p.add_argument("--jobs", type=int, default=1, help="runs trained in parallel on this machine (cores are split between them)")
    p.add_argument("--threads", type=int, help="CPU threads per job (default: cores // jobs)")
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="local processes, or a Dask cluster (needs mnist-vae[dask])")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786", help="the Dask scheduler's address (with --executor dask)")
    p.add_argument("--device", help=f"train and evaluate on: cpu, cuda, cuda:N, mps or auto (default: {STUDY_DEVICE})")
    p.add_argument(
        "--train-precision",
        dest="train_precision",
        choices=PRECISIONS,
        help=f"training precision of every configuration that does not set its own (default: {STUDY_TRAIN_PRECISION}: bf16 where "
        "the hardware computes it natively, fp32 elsewhere; docs/performance.md has the paired-seed evidence behind this default)",
    )
    p.add_argument("--out", default="study", help="study folder (every Dask worker must reach it)")
    p.add_argument(
        "--screen",
        action="store_true",
        help="an ablation screen: evaluate only the NLL, test ELBO and active units (no classifier, samples or probe)",
    )
    p.add_argument(
        "--until-settled",
        action="store_true",
        help="after the first --seeds, add seeds in rounds to the configurations whose claims are still open, until every "
        "claim is settled, --max-seeds or --budget; verdicts then use an anytime-valid interval that stays valid however "
        "often it is looked at (docs/evaluation.md)",
    )
    p.add_argument("--max-seeds", type=int, default=20, help="with --until-settled: at most this many seeds per configuration")
    p.add_argument(
        "--budget", metavar="DURATION", help="with --until-settled: stop before a round the cost model says would end past this (90m, 1.5h)"
    )
    p.add_argument("--report-only", action="store_true", help="train nothing: write the report from the runs already evaluated")
    p.add_argument("--estimate", action="store_true", help="print the estimated time of every run (timed on a few steps here) and stop")
