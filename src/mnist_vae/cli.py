"""The ``mnist-vae`` command: a thin wrapper over train(), the figures and the evaluators.

Every error the user can cause is an :class:`~mnist_vae.errors.MnistVaeError`; ``main`` prints it
as one line on stderr and exits 2 (1 for a diverged run, 130/143 after SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Sequence

from .cli_dist import add_commands as add_dist_commands
from .cli_dist import add_train_flags
from .errors import MnistVaeError, TrainingDiverged

DEFAULT_CONFIG = "optimized"


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


# --- configuration -----------------------------------------------------------------------------


def resolve_config(args: argparse.Namespace):
    """The RunConfig named by --config (preset name or .toml file) with the command-line overrides."""
    from .config import load_toml
    from .presets import get_config

    name = args.config or DEFAULT_CONFIG
    cfg = load_toml(name) if name.endswith(".toml") or Path(name).is_file() else get_config(name)
    sets = list(args.set or [])
    for flag, field in (("epochs", "epochs"), ("seed", "seed"), ("dataset", "dataset"), ("data_path", "data_path"),
                        ("binarize", "binarize"), ("threads", "threads"), ("device", "device"), ("precision", "precision"),
                        ("batch_size", "batch_size"), ("lr", "lr")):
        value = getattr(args, flag, None)
        if value is not None:
            sets.append(f"train.{field}={_toml_literal(value)}")
    return cfg.override(sets) if sets else cfg


def _toml_literal(value: object) -> str:
    if isinstance(value, str):
        import json

        return json.dumps(value)
    return repr(value)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"a name from `mnist-vae configs` or a .toml file (default: {DEFAULT_CONFIG})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field, e.g. --set latent_dim=2 (repeatable)")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the config's, 50)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the config's)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="batch size (default: 100)")
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    p.add_argument("--dataset", choices=["auto", "embedded", "mnist", "fashion-mnist"],
                   help="auto (default): full MNIST if cached or downloadable within seconds, else the embedded 10,000 digits")
    p.add_argument("--data-path", dest="data_path", help="a folder of IDX files or a Keras-style mnist.npz to train on")
    p.add_argument("--binarize", choices=["none", "static", "dynamic"], help="pixel binarisation (default: none; dynamic = resampled each epoch)")
    p.add_argument("--threads", type=int, help="CPU threads (default: 0 = one per core)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"],
                   help="autocast precision (default: fp32; auto = bf16 where the hardware computes it natively; fp16 needs cuda/mps)")


# --- commands ----------------------------------------------------------------------------------


def cmd_configs(args: argparse.Namespace) -> int:
    from .models import VAE, count_parameters
    from .presets import get_config, list_configs

    width = max(map(len, list_configs()))
    for name in list_configs():
        cfg = get_config(name)
        params = count_parameters(VAE(cfg.model)) if args.params else None
        extra = f"  {params:>10,d} params" if params is not None else ""
        print(f"{name:<{width}}  lr {cfg.train.lr:<6g} latent {cfg.model.latent_dim:<3d}{extra}  {cfg.description}")
    if args.show:
        print()
        print(get_config(args.show).to_toml())
    return 0


RESUME_CONFLICTS = ("config", "set", "lr", "batch_size", "seed", "dataset", "data_path", "binarize",
                    "device", "precision", "out", "force")


def cmd_train(args: argparse.Namespace) -> int:
    from .errors import ConfigError

    if args.nproc != 1:
        from .cli_dist import launch_nproc

        return launch_nproc(args.nproc, args.argv)
    from .train import read_run_config, train

    if args.resume:
        # The run's own config.toml governs a resumed run; silently ignoring other settings would
        # train something the user did not ask for.
        given = [f"--{k.replace('_', '-')}" for k in RESUME_CONFLICTS if getattr(args, k, None) not in (None, False, [])]
        if given:
            raise ConfigError(f"--resume continues a run with its own config.toml; only --epochs and --threads may be given with it, not {', '.join(given)}")
        cfg = read_run_config(Path(args.resume))
        sets = [f"train.{k}={getattr(args, k)}" for k in ("epochs", "threads") if getattr(args, k) is not None]
        cfg = cfg.override(sets) if sets else cfg
        out = args.resume
    else:
        cfg = resolve_config(args)
        out = args.out
    metrics = train(cfg, out, resume=bool(args.resume), force=args.force, progress=not args.no_progress, tensorboard=args.tensorboard)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line (from rank 0)
        print(
            f"done: {metrics['epoch']} epochs in {metrics['total_train_seconds']:.1f} s of training; "
            f"test loss {metrics['test_loss']:.2f} (recon {metrics['test_recon']:.2f}, KL {metrics['test_kl']:.2f}); "
            f"{metrics['images_per_second']:.0f} img/s in the last epoch; run folder {metrics['run_dir']}"
        )
    return 0


def _open(args: argparse.Namespace):
    from .runs import open_run

    return open_run(args.run, warn=_err)


def _test_data(run):
    from .train import prepare_data, resolve_device

    return prepare_data(run.config, resolve_device("cpu"), log=lambda m: None)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .figures import figure_reconstructions

    run = _open(args)
    data = _test_data(run)
    print(figure_reconstructions(run.path, run.model, data.test_x, f"{run.config.name}: test digits and reconstructions", data.test_labels))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from .figures import figure_samples

    run = _open(args)
    print(figure_samples(run.path, run.model, seed=args.seed, n=args.n, title=f"{run.config.name}: samples (seed {args.seed})"))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .figures import figure_interpolation

    run = _open(args)
    data = _test_data(run)
    pair = None
    if args.a is not None or args.b is not None:
        n = len(data.test_x)
        a, b = args.a or 0, args.b if args.b is not None else 1
        for name, v in (("--a", a), ("--b", b)):
            if not 0 <= v < n:
                raise MnistVaeError(f"{name}: test index {v} is out of range 0..{n - 1}")
        pair = (a, b)
    print(figure_interpolation(run.path, run.model, data.test_x, data.test_labels, steps=args.steps, pair=pair))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .figures import figure_loss_curves, figure_samples_over_training

    run = _open(args)
    if not run.history:
        raise MnistVaeError(f"{args.run}: no finished epoch to plot yet")
    print(figure_loss_curves(run.path, run.history, run.config.name))
    if run.snapshots:
        print(figure_samples_over_training(run.path, run.snapshots, f"{run.config.name}: the same z after each marked epoch"))
    return 0


# --- entry point -------------------------------------------------------------------------------


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells something: not for None (the option falls back
    to the configuration, whose default the help text names) and not twice."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "(default" in text:
            return text
        return super()._get_help_string(action) or text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-vae",
        description="Train, evaluate and explore a VAE for handwritten digits (LSTM row encoder, transposed-conv decoder).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_DefaultsHelp)
        p.set_defaults(func=func)
        return p

    p = add("configs", cmd_configs, "list the named configurations")
    p.add_argument("--params", action="store_true", help="also count each configuration's parameters")
    p.add_argument("--show", metavar="NAME", help="print one configuration as TOML (a starting point for --config FILE)")

    p = add("train", cmd_train, "train a configuration; writes a run folder with checkpoints, metrics.jsonl and figures")
    _add_train_options(p)
    p.add_argument("--out", help="run folder (default: runs/<config>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its newest checkpoint (--epochs may extend it)")
    p.add_argument("--force", action="store_true", help="replace an existing run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    add_train_flags(p)

    for name, func, help in (
        ("reconstruct", cmd_reconstruct, "write RUN/reconstructions.png: test digits above their reconstructions"),
        ("sample", cmd_sample, "write RUN/samples.png: digits decoded from z ~ N(0, I)"),
        ("interpolate", cmd_interpolate, "write RUN/interpolation.png: decodings between two test digits' codes"),
        ("plot", cmd_plot, "write RUN/loss_curves.png and RUN/samples_over_training.png"),
    ):
        p = add(name, func, help)
        p.add_argument("run", metavar="RUN", help="a run folder")
        if name == "sample":
            p.add_argument("--n", type=int, default=64, help="number of samples")
            p.add_argument("--seed", type=int, default=0, help="seed for z")
        if name == "interpolate":
            p.add_argument("--a", type=int, help="index of the first test digit (default: 0)")
            p.add_argument("--b", type=int, help="index of the second test digit (default: the first of another class)")
            p.add_argument("--steps", type=int, default=10, help="number of images in the row")
    from .cli_eval import add_commands as add_eval_commands
    from .cli_web import add_commands as add_web_commands

    add_eval_commands(sub, add)
    add_web_commands(sub, add)
    add_dist_commands(sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --nproc N` re-launches with these
    from .train import Interrupted

    try:
        return args.func(args)
    except Interrupted as exc:
        name = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}.get(exc.signum, "stop")
        if os.environ.get("RANK", "0") == "0":  # every torchrun process stops; one of them says so
            _err(f"stopped by {name}: saved {exc.checkpoint}; continue with --resume {exc.checkpoint.parent.parent}")
        return 128 + exc.signum if exc.signum else 1
    except TrainingDiverged as exc:
        _err(f"error: {exc}")
        return 1
    except MnistVaeError as exc:
        _err(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except OSError as exc:  # an I/O failure no write site turned into a WriteError
        where = f"{exc.filename}: " if exc.filename else ""
        _err(f"error: {where}{exc.strerror or exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
