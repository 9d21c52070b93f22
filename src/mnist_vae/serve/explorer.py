"""What the explorer page shows, computed from a run: the model calls and everything precomputed at start-up.

Everything heavy is computed once (the test digits' posterior means, their PCA projection, the
2-D manifold); afterwards a request only decodes or encodes one image (or a few), which takes a
few milliseconds on one CPU thread.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from ..data import load_dataset, prepare_data
from ..evaluation.latent import ACTIVE_THRESHOLD, active_units
from ..runs.folder import Run
from .images import png_gray

Z_LIMIT = 10.0  # |z_i| accepted by the API; the prior puts essentially nothing beyond 5
MAX_SAMPLES = 64
MAX_STEPS = 16
MAX_SLIDERS = 16
MAX_SCATTER = 2500  # points drawn in the PCA plot; more only clutters it
MANIFOLD_SIDE = 15  # images per side of the decoded 2-D manifold
MANIFOLD_RANGE = 3.0  # the plane spans [-3, 3]^2 of the prior
N_NEIGHBOURS = 5
SEED_MAX = 2**31 - 1


def _test_dataset(run: Run):
    """The dataset the run was trained on, without touching the network for ``auto``."""
    t = run.config.train
    name = t.dataset
    recorded = (run.meta.get("dataset") or {}).get("name")
    if name == "auto" and recorded in ("embedded", "mnist", "fashion-mnist"):
        name = recorded  # "auto" resolved to this when the run was trained
    return load_dataset(name, t.data_path or None, download=False)


class Explorer:
    """The model plus everything precomputed for the page; methods take validated arguments."""

    def __init__(self, run: Run, dataset: Any = None) -> None:
        self.run = run
        self.model = run.model.cpu().eval()
        self.latent_dim = run.config.model.latent_dim
        self.lock = threading.Lock()  # one model call at a time: single-image calls, no contention worth having
        data = prepare_data(run.config, torch.device("cpu"), dataset=dataset or _test_dataset(run))
        self.dataset = data.dataset
        self.test_x = data.test_x
        self.test_labels = data.test_labels.cpu()
        with torch.no_grad():
            codes = [self.model.encode(b) for b in self.test_x.split(500)]
        self.test_mu = torch.cat([mu.float() for mu, _ in codes]) if codes else torch.zeros(0, self.latent_dim)
        logvar = torch.cat([lv.float() for _, lv in codes]) if codes else torch.zeros(0, self.latent_dim)
        self.active, self.variance, self.kl = _activity(self.test_mu, logvar)
        # Sliders: active dimensions first (in index order), then the inactive ones, at most MAX_SLIDERS.
        order = [d for d in range(self.latent_dim) if self.active[d]] + [d for d in range(self.latent_dim) if not self.active[d]]
        self.slider_dims = order[:MAX_SLIDERS]
        self.pca_mean, self.pca_axes = _pca2(self.test_mu)
        self.test_xy = self.project(self.test_mu)
        lo = torch.quantile(self.test_mu, 0.001, dim=0) if len(self.test_mu) else torch.zeros(self.latent_dim)
        hi = torch.quantile(self.test_mu, 0.999, dim=0) if len(self.test_mu) else torch.zeros(self.latent_dim)
        self.slider_lo = lo.clamp(max=-3.0).floor().clamp(min=-Z_LIMIT)
        self.slider_hi = hi.clamp(min=3.0).ceil().clamp(max=Z_LIMIT)
        self.manifold_png = self._manifold() if self.latent_dim == 2 else None
        self.loss_png = self._loss_png()

    # --- model calls ---------------------------------------------------------------------

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> probabilities [B, 28, 28]."""
        with self.lock:
            return self.model.decode_probs(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 28, 28] in [0, 1] -> μ [B, D]."""
        with self.lock, torch.no_grad():
            return self.model.encode(x)[0].float()

    def project(self, mu: torch.Tensor) -> torch.Tensor:
        """Codes [B, D] -> their coordinates [B, 2] on the test codes' two principal axes."""
        return (mu - self.pca_mean) @ self.pca_axes

    # --- precomputed figures ---------------------------------------------------------------

    def _manifold(self) -> bytes:
        # Row 0 is the top of the plane, i.e. the largest z2.
        s = torch.linspace(-MANIFOLD_RANGE, MANIFOLD_RANGE, MANIFOLD_SIDE)
        z = torch.stack([s.repeat(MANIFOLD_SIDE), s.flip(0).repeat_interleave(MANIFOLD_SIDE)], 1)
        imgs = self.decode(z).reshape(MANIFOLD_SIDE, MANIFOLD_SIDE, 28, 28)
        return png_gray(imgs.permute(0, 2, 1, 3).reshape(MANIFOLD_SIDE * 28, MANIFOLD_SIDE * 28))

    def _loss_png(self) -> bytes | None:
        path = self.run.path / "loss_curves.png"
        if path.is_file():
            return path.read_bytes()
        if not self.run.history:
            return None
        from ..viz.plots import loss_curves

        with tempfile.TemporaryDirectory() as tmp:  # drawn for the page only; the run folder is left as it is
            return loss_curves(self.run.history, Path(tmp) / "loss_curves.png", self.run.config.name).read_bytes()

    def info(self) -> dict[str, Any]:
        """Run facts and what the page needs to lay itself out."""
        cfg, last = self.run.config, (self.run.history[-1] if self.run.history else {})
        return {
            "name": cfg.name,
            "description": cfg.description,
            "run": self.run.path.name,
            "latent_dim": self.latent_dim,
            "sliders": len(self.slider_dims),
            "slider_dims": self.slider_dims,
            "slider_min": [round(float(v), 3) for v in self.slider_lo],
            "slider_max": [round(float(v), 3) for v in self.slider_hi],
            "active": self.active,
            "latent_variance": [float(f"{v:.6g}") for v in self.variance],
            "latent_kl": [float(f"{v:.6g}") for v in self.kl],
            "active_threshold": ACTIVE_THRESHOLD,
            "n_active": sum(self.active),
            "z_limit": Z_LIMIT,
            "max_samples": MAX_SAMPLES,
            "max_steps": MAX_STEPS,
            "epochs": self.run.epoch,
            "epochs_planned": cfg.train.epochs,
            "final": {k: last.get(k) for k in ("test_loss", "test_recon", "test_kl", "train_loss")} if last else None,
            "train_seconds": round(sum(r.get("train_seconds", 0.0) for r in self.run.history), 1),
            "parameters": self.run.meta.get("parameters"),
            "created": self.run.meta.get("created"),
            "dataset": self.dataset.info() | {"sha256": self.dataset.sha256[:12]},
            "config": cfg.to_dict(),
            "config_toml": cfg.to_toml(),
            "n_test": len(self.test_x),
            "labels": "".join(str(int(v)) for v in self.test_labels),
            "has_loss_curves": self.loss_png is not None,
            "manifold": {"side": MANIFOLD_SIDE, "range": MANIFOLD_RANGE} if self.manifold_png else None,
        }

    def projection(self) -> dict[str, Any]:
        n = len(self.test_xy)
        keep = (
            torch.randperm(n, generator=torch.Generator().manual_seed(0))[:MAX_SCATTER].sort().values
            if n > MAX_SCATTER
            else torch.arange(n)
        )
        xy = self.test_xy[keep]
        return {
            "x": [round(float(v), 3) for v in xy[:, 0]],
            "y": [round(float(v), 3) for v in xy[:, 1]],
            "label": [int(self.test_labels[i]) for i in keep],
            "index": [int(i) for i in keep],
            "n_test": n,
        }


def _activity(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[list[bool], list[float], list[float]]:
    """Per latent dimension: active?, Var over the test digits of μ_d, and the mean KL(q(z_d|x) ‖ N(0, 1)).

    A dimension is active when the encoder's mean moves with the image: Var_x μ_d > 0.01 (Burda et
    al.'s rule, as ``mnist-vae evaluate`` counts active units). An inactive one carries no
    information (its KL is close to 0) and the decoder has learnt to ignore it.
    """
    _, variance = active_units(mu)
    kl = (0.5 * (mu.double() ** 2 + logvar.double().exp() - logvar.double() - 1)).mean(0) if len(mu) else torch.zeros(mu.shape[1])
    return [v > ACTIVE_THRESHOLD for v in variance], variance, [float(v) for v in kl]


def _pca2(mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [D] and the two leading principal axes [D, 2] (zero-padded when D < 2)."""
    d = mu.shape[1]
    mean = mu.mean(0) if len(mu) else torch.zeros(d)
    if len(mu) < 2:
        return mean, torch.eye(d, 2)
    _, _, vh = torch.linalg.svd(mu - mean, full_matrices=False)
    axes = torch.zeros(d, 2)
    k = min(2, vh.shape[0])
    axes[:, :k] = vh[:k].T
    for j in range(k):  # fix the sign so the picture does not flip between runs of the same model
        if axes[:, j].sum() < 0:
            axes[:, j] = -axes[:, j]
    return mean, axes
