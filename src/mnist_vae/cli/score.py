"""``mnist-vae score RUN|--pretrained NAME FILES...``: −ELBO, importance-weighted NLL and a reconstruction per image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import EvalConfig
from ..errors import ConfigError
from .common import Adder, add_threads_option, set_threads_from
from .serve import add_pretrained_option, run_or_pretrained

#: Exit code when some files could not be scored (the others were, and are written).
EXIT_SOME_FAILED = 3
DEFAULTS = EvalConfig()


def split_inputs(args: argparse.Namespace) -> list[str]:
    """Sets ``args.run`` (the first input, unless --pretrained) and returns the files to score."""
    from ..runs.folder import RUN_MARKER

    inputs = list(args.inputs)
    if args.pretrained is None:
        args.run = inputs.pop(0)
        if not inputs:
            raise ConfigError(f"score: no FILE to score after the run folder {args.run}")
    else:
        args.run = None
        if (Path(inputs[0]) / RUN_MARKER).is_file():
            raise ConfigError(f"score: give a run folder or --pretrained NAME (one of them, not both): {inputs[0]} is a run folder")
    return inputs


def recon_dir_for(args: argparse.Namespace) -> Path | None:
    """--recon DIR, else ``<out>-recon/`` beside --out, else None (no reconstructions written)."""
    if args.recon:
        return Path(args.recon)
    if args.out:
        out = Path(args.out)
        return out.with_name(out.stem + "-recon")
    return None


def cmd_score(args: argparse.Namespace) -> int:
    """Score FILES with a run's model or a shipped one; one line per image, errors one line per file."""
    from ..evaluation.score import ELBO_SAMPLES, check_out_path, conversion_text, score_files, write_results
    from ..runs.folder import Run, open_run

    files = split_inputs(args)
    try:
        EvalConfig(k=args.k, chunk=args.chunk, seed=args.seed)
    except ConfigError as exc:
        raise ConfigError(f"--{exc}") from None
    if args.out:
        check_out_path(args.out)
    set_threads_from(args)
    opened = run_or_pretrained(args)
    run = opened if isinstance(opened, Run) else open_run(opened)
    source = f"pretrained {args.pretrained}" if args.pretrained else str(run.path)
    recon_dir = recon_dir_for(args)
    print(f"model: {run.config.name} ({source}, epoch {run.epoch})")
    print(
        f"-ELBO: mean over {ELBO_SAMPLES} z ~ q(z|x), seed {args.seed}; NLL: importance-weighted, K={args.k}, seed {args.seed}; nats per image"
    )
    print(conversion_text(args.fit, args.invert))
    width = min(48, max([len("file"), *(len(f) + 6 for f in files)]))
    print(f"{'file':<{width}} {'-ELBO':>9} {'NLL':>9}  reconstruction")

    def row_line(row: dict[str, Any]) -> None:
        name = row["file"] if row["index"] is None else f"{row['file']}[{row['index']}]"
        print(f"{name:<{width}} {row['neg_elbo']:>9.2f} {row['nll']:>9.2f}  {row['reconstruction'] or '-'}", flush=True)

    def failure_line(file: str, problem: str) -> None:
        print(f"error: {file}: {problem}", file=sys.stderr, flush=True)

    result = score_files(
        run.model,
        files,
        k=args.k,
        seed=args.seed,
        chunk=args.chunk,
        fit=args.fit,
        invert=args.invert,
        recon_dir=recon_dir,
        on_row=row_line,
        on_failure=failure_line,
    )
    n_files = len(files)
    summary = (
        f"scored {len(result.rows)} image{'s' if len(result.rows) != 1 else ''} from {n_files - len(result.failures)} of {n_files} files"
    )
    if recon_dir is None:
        summary += "; reconstructions not written (give --recon DIR or --out FILE)"
    print(summary)
    if args.out:
        about = {
            "model": {"config": run.config.name, "source": source, "epoch": run.epoch},
            "settings": {
                "k": args.k,
                "elbo_samples": ELBO_SAMPLES,
                "seed": args.seed,
                "chunk": args.chunk,
                "fit": args.fit,
                "invert": args.invert,
            },
            "conversion": conversion_text(args.fit, args.invert),
            "units": "nats per image",
        }
        print(f"wrote {write_results(args.out, result, about)}")
    if result.failures:
        print(f"error: {len(result.failures)} of {n_files} files could not be scored (exit code {EXIT_SOME_FAILED})", file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def add_commands(add: Adder) -> None:
    """Register ``score``."""
    from ..evaluation.score import FITS, INVERTS, conversion_text

    p = add(
        "score",
        cmd_score,
        "score image files with a trained model: -ELBO, importance-weighted NLL and a reconstruction per image",
    )
    p.epilog = (
        f"Inputs: PNG or JPEG (any size, colour or grey) or .npy arrays ([28, 28] or [N, 28, 28], uint8 or floats in [0, 1]). "
        f"Default conversion: {conversion_text()}. "
        f"Exit codes: 0 every file scored; {EXIT_SOME_FAILED} some files could not be scored (each is named on stderr, "
        "the others are scored and written); 2 nothing scored because of a bad model, option or output path."
    )
    p.usage = "%(prog)s [options] (RUN | --pretrained NAME) FILE [FILE ...]"
    p.add_argument(
        "inputs", metavar="FILE", nargs="+", help="PNG, JPEG or .npy files, after the run folder RUN unless --pretrained is given"
    )
    add_pretrained_option(p)
    p.add_argument("--k", type=int, default=DEFAULTS.k, help="importance samples per image for the NLL")
    p.add_argument("--chunk", type=int, default=DEFAULTS.chunk, help="latent codes decoded at once in the NLL")
    p.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help="seed of the -ELBO's z and the NLL's importance samples (fresh per image)"
    )
    p.add_argument(
        "--fit",
        choices=FITS,
        default="canvas",
        help="canvas: crop to the ink, scale into 20x20, centre by mass (as the explorer's drawing pad); resize: the whole image to 28x28",
    )
    p.add_argument(
        "--invert", choices=INVERTS, default="auto", help="auto: invert when the border is light (the model wants light ink on dark)"
    )
    p.add_argument(
        "--out", metavar="FILE", help="write every score to FILE.csv or FILE.json (atomically); reconstructions go to FILE-recon/"
    )
    p.add_argument("--recon", metavar="DIR", help="write each input beside its reconstruction as a PNG into DIR")
    add_threads_option(p)
