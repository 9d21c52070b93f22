"""``mnist-vae reconstruct | sample | interpolate | plot RUN``: redraw a run's pictures."""

from __future__ import annotations

import argparse

from ..errors import MnistVaeError
from .common import Adder


def _open(args: argparse.Namespace):  # -> (Run, Prepared | None)
    from ..runs.folder import open_run

    return open_run(args.run)


def _test_data(run):  # the exact test tensors the run was trained against
    import torch

    from ..data import prepare_data

    return prepare_data(run.config, torch.device("cpu"))


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from ..viz.figures import figure_reconstructions

    run = _open(args)
    data = _test_data(run)
    print(figure_reconstructions(run.path, run.model, data.test_x, f"{run.config.name}: test digits and reconstructions", data.test_labels))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from ..viz.figures import figure_samples

    run = _open(args)
    if args.n < 1:
        raise MnistVaeError(f"--n: must be a positive number of samples, got {args.n}")
    print(figure_samples(run.path, run.model, seed=args.seed, n=args.n, title=f"{run.config.name}: samples (seed {args.seed})"))
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from ..viz.figures import default_pair, figure_interpolation

    run = _open(args)
    data = _test_data(run)
    pair = None
    if args.a is not None or args.b is not None:
        n = len(data.test_x)
        a, b = args.a or 0, args.b if args.b is not None else default_pair(data.test_labels)[1]
        for name, v in (("--a", a), ("--b", b)):
            if not 0 <= v < n:
                raise MnistVaeError(f"{name}: test index {v} is out of range 0..{n - 1}")
        pair = (a, b)
    if args.steps < 2:
        raise MnistVaeError(f"--steps: needs at least 2 images in the row, got {args.steps}")
    print(figure_interpolation(run.path, run.model, data.test_x, data.test_labels, steps=args.steps, pair=pair))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from ..viz.figures import figure_loss_curves, figure_samples_over_training

    run = _open(args)
    if not run.history:
        raise MnistVaeError(f"{args.run}: no finished epoch to plot yet")
    print(figure_loss_curves(run.path, run.history, run.config.name))
    if run.snapshots:
        print(figure_samples_over_training(run.path, run.snapshots, f"{run.config.name}: the same z after each marked epoch"))
    return 0


def add_commands(add: Adder) -> None:
    """Register the four picture commands."""
    for name, func, text in (
        ("reconstruct", cmd_reconstruct, "write RUN/reconstructions.png: test digits above their reconstructions"),
        ("sample", cmd_sample, "write RUN/samples.png: digits decoded from z ~ N(0, I)"),
        ("interpolate", cmd_interpolate, "write RUN/interpolation.png: decodings between two test digits' codes"),
        ("plot", cmd_plot, "write RUN/loss_curves.png and RUN/samples_over_training.png"),
    ):
        p = add(name, func, text)
        p.add_argument("run", metavar="RUN", help="a run folder")
        if name == "sample":
            p.add_argument("--n", type=int, default=64, help="number of samples")
            p.add_argument("--seed", type=int, default=0, help="seed for z")
        if name == "interpolate":
            p.add_argument("--a", type=int, help="index of the first test digit (default: 0)")
            p.add_argument("--b", type=int, help="index of the second test digit (default: the first of another class)")
            p.add_argument("--steps", type=int, default=10, help="number of images in the row")
