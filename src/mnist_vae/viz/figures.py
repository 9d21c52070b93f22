"""The pictures of a run: which images go into which PNG. Used at the end of training and by the CLI.

Models are used through their inference API (``reconstruct``, ``sample``, ``interpolate``) in eval
mode; drawing is left to :mod:`.plots`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import plots

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..data import Prepared
    from ..models import VAE

log = logging.getLogger(__name__)

N_RECON = 10
N_SAMPLES = 64
FILES = ("reconstructions.png", "loss_curves.png", "samples.png", "samples_over_training.png", "interpolation.png")


def one_per_class(labels: torch.Tensor) -> torch.Tensor:
    """Index of the first example of each class present, in class order (the test split is class-sorted)."""
    return torch.stack([torch.nonzero(labels == c)[0, 0] for c in torch.unique(labels)])


def figure_reconstructions(
    run_dir: Path, model: VAE, test_x: torch.Tensor, title: str = "", test_labels: torch.Tensor | None = None
) -> Path:
    """reconstructions.png: one test digit per class above its reconstruction."""
    x = test_x[one_per_class(test_labels)[:N_RECON]] if test_labels is not None else test_x[:N_RECON]
    return plots.image_rows([x, model.reconstruct(x)], ["input", "reconstruction"], Path(run_dir) / "reconstructions.png", title)


def figure_samples(run_dir: Path, model: VAE, seed: int = 0, n: int = N_SAMPLES, title: str = "") -> Path:
    """samples.png: ``n`` digits decoded from z ~ N(0, I), seeded."""
    images = model.sample(n, torch.Generator().manual_seed(seed))
    return plots.image_grid(images, Path(run_dir) / "samples.png", ncols=8, title=title or f"samples (seed {seed})")


def default_pair(test_labels: torch.Tensor) -> tuple[int, int]:
    """Test digit 0 and the first test digit of another class (0 and 1 if all share a class)."""
    first = int(test_labels[0])
    others = torch.nonzero(test_labels != first)
    return 0, int(others[0]) if len(others) else min(1, len(test_labels) - 1)


def figure_interpolation(
    run_dir: Path,
    model: VAE,
    test_x: torch.Tensor,
    test_labels: torch.Tensor,
    steps: int = 10,
    pair: tuple[int, int] | None = None,
    title: str = "",
) -> Path:
    """interpolation.png: decodings between the codes of two test digits (default: :func:`default_pair`)."""
    a, b = pair if pair is not None else default_pair(test_labels)
    row = model.interpolate(test_x[a], test_x[b], steps)
    label = f"{int(test_labels[a])} → {int(test_labels[b])}"
    return plots.image_rows(
        [row], [label], Path(run_dir) / "interpolation.png", title or f"interpolation between test digits #{a} and #{b}"
    )


def figure_loss_curves(run_dir: Path, history: list[dict[str, Any]], title: str = "") -> Path:
    """loss_curves.png."""
    return plots.loss_curves(history, Path(run_dir) / "loss_curves.png", title)


def figure_samples_over_training(run_dir: Path, snapshots: dict[str, torch.Tensor], title: str = "") -> Path:
    """samples_over_training.png: the same fixed z decoded after epochs 1, 5, 10, ... and the last."""
    epochs = sorted(snapshots, key=int)
    return plots.image_rows(
        [snapshots[e] for e in epochs],
        [f"epoch {e}" for e in epochs],
        Path(run_dir) / "samples_over_training.png",
        title or "the same z decoded during training",
    )


def write_run_figures(
    run_dir: Path, model: VAE, history: list[dict[str, Any]], snapshots: dict[str, torch.Tensor], data: Prepared, cfg: RunConfig
) -> list[Path]:
    """All five figures of a run (the model is used in eval mode and put back); returns their paths."""
    was = model.training
    model.eval()
    name = cfg.name
    try:
        paths = [
            figure_reconstructions(run_dir, model, data.test_x, f"{name}: test digits and reconstructions", data.test_labels),
            figure_loss_curves(run_dir, history, name),
            figure_samples(run_dir, model, seed=cfg.train.seed, title=f"{name}: samples from N(0, I)"),
            figure_samples_over_training(run_dir, snapshots, f"{name}: the same z after each marked epoch"),
            figure_interpolation(run_dir, model, data.test_x, data.test_labels, title=f"{name}: latent interpolation"),
        ]
    finally:
        model.train(was)
    log.info("figures: " + ", ".join(p.name for p in paths))
    return paths
