"""``mnist-vae study``: configurations x training seeds, a report with intervals and the claim table."""

from __future__ import annotations

import argparse

from ..study.settings import FIELD_FLAGS, STUDY_EVAL, StudySettings
from ..study.settle import parse_duration
from .common import Adder, add_dataset_options, add_field_options
from .evaluate import eval_options, eval_settings


def study_settings(args: argparse.Namespace) -> StudySettings:
    """The StudySettings the options describe (flags not given stay None: variants may set those fields)."""
    return StudySettings(
        **{name: getattr(args, name) for name in FIELD_FLAGS},
        configs=tuple(split_specs(args.configs)) if args.configs else (),
        eval=eval_settings(args),
        dataset=args.dataset,
        data_path=args.data_path or "",
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
    add_field_options(p, StudySettings, FIELD_FLAGS)
    eval_options(p, STUDY_EVAL, "decoder precision for the NLL (auto: bf16 where the hardware computes it natively, fp32 elsewhere)")
    add_dataset_options(p, default="auto")
    p.add_argument(
        "--budget", metavar="DURATION", help="with --until-settled: stop before a round the cost model says would end past this (90m, 1.5h)"
    )
    p.add_argument("--report-only", action="store_true", help="train nothing: write the report from the runs already evaluated")
    p.add_argument("--estimate", action="store_true", help="print the estimated time of every run (timed on a few steps here) and stop")
