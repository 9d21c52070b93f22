"""A small CNN digit classifier that judges generated samples; trained once per dataset and cached.

The cache file is ``data_root()/classifiers/<dataset sha256[:16]>.safetensors``: weights plus
metadata (architecture version, test accuracy, the train-vs-test Fréchet floor), written
atomically. Every evaluation of a model trained on that dataset reuses it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset, data_root, to_unit_float
from ..errors import CheckpointError, DataError
from ..io import atomic_path, read_safetensors
from .samples import frechet_distance

log = logging.getLogger(__name__)

ARCH = "digit-cnn/2"  # bump when DigitCNN changes, so stale caches are retrained
MIN_ACCURACY = 0.97
FEATURES = 128


class DigitCNN(nn.Module):
    """x [B, 28, 28] in [0, 1] -> logits [B, 10]; :meth:`features` gives the 128-d penultimate layer."""

    def __init__(self) -> None:
        super().__init__()
        # Strided convolutions instead of pooling: a third of the arithmetic, same accuracy here.
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1),
            nn.ReLU(),  # 28 -> 14
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),  # 14 -> 7
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.reshape(len(x), 1, 28, 28))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class Classifier:
    """A trained :class:`DigitCNN` with what is known about it."""

    model: DigitCNN
    test_accuracy: float
    floor_frechet: float  # Fréchet distance between train and test features: the best a sampler can hope for
    dataset_sha256: str
    path: Path | None = None
    train_seconds: float = 0.0

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, batch_size: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """(class probabilities [N, 10], penultimate features [N, 128]) for float images in [0, 1]."""
        self.model.eval()
        probs, feats = [], []
        for start in range(0, len(images), batch_size):
            f = self.model.features(images[start : start + batch_size].float().cpu())
            feats.append(f)
            probs.append(torch.softmax(self.model.head(f), 1))
        if not probs:
            return torch.zeros(0, 10), torch.zeros(0, FEATURES)
        return torch.cat(probs), torch.cat(feats)


def cache_path(dataset: Dataset) -> Path:
    """Where the classifier for ``dataset`` is cached."""
    return data_root() / "classifiers" / f"{dataset.sha256[:16]}.safetensors"


def _shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (one shift per batch, cheap), zero-filled."""
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@torch.inference_mode()
def accuracy(model: DigitCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of ``images`` (float in [0, 1]) whose predicted class equals ``labels``."""
    model.eval()
    if len(images) == 0:
        return float("nan")
    hits = sum(
        int((model(images[s : s + batch_size]).argmax(1) == labels[s : s + batch_size]).sum()) for s in range(0, len(images), batch_size)
    )
    return hits / len(images)


def train_classifier(dataset: Dataset, epochs: int = 10, batch_size: int = 50, lr: float = 3e-3, seed: int = 0) -> Classifier:
    """Fit :class:`DigitCNN` on the dataset's training split (Adam, random shifts), score it on the test split."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = DigitCNN()
    train_x, train_y = to_unit_float(dataset.train_images), dataset.train_labels
    test_x, test_y = to_unit_float(dataset.test_images), dataset.test_labels
    if len(train_x) == 0:
        raise DataError(f"dataset {dataset.name}: no training images to fit the digit classifier on")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(train_x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(train_x), generator=g)
        total = 0.0
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            x = _shift(train_x[idx], g) if epoch < epochs - 1 else train_x[idx]  # last epoch on clean digits
            loss = F.cross_entropy(model(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log.info(f"classifier epoch {epoch + 1}/{epochs}: train loss {total / len(train_x):.4f}")
    acc = accuracy(model, test_x, test_y)
    clf = Classifier(model.eval(), acc, float("nan"), dataset.sha256, train_seconds=time.perf_counter() - t0)
    _, f_train = clf.predict(train_x)
    _, f_test = clf.predict(test_x)
    clf.floor_frechet = frechet_distance(f_train.numpy(), f_test.numpy()) if len(test_x) > 1 else float("nan")
    clf.train_seconds = time.perf_counter() - t0
    log.info(
        f"classifier: test accuracy {acc:.4f} on {len(test_x):,} images; train-vs-test Fréchet floor "
        f"{clf.floor_frechet:.3f}; {clf.train_seconds:.1f} s"
    )
    return clf


def save_classifier(clf: Classifier, path: Path) -> Path:
    """Write weights + metadata atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "arch": ARCH,
        "test_accuracy": repr(clf.test_accuracy),
        "floor_frechet": repr(clf.floor_frechet),
        "dataset_sha256": clf.dataset_sha256,
        "train_seconds": repr(round(clf.train_seconds, 3)),
    }
    weights = {k: v.detach().contiguous() for k, v in clf.model.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(weights, str(tmp), metadata=meta)
    clf.path = path
    return path


def load_classifier(path: Path) -> Classifier:
    """Read a cached classifier; :class:`CheckpointError` if it is damaged or of another architecture."""
    path = Path(path)
    weights, meta = read_safetensors(path, "classifier file")
    if meta.get("arch") != ARCH:
        raise CheckpointError(f"{path}: classifier architecture {meta.get('arch')!r}, expected {ARCH!r}")
    model = DigitCNN()
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f"{path}: classifier weights do not fit {ARCH}") from None
    return Classifier(
        model.eval(),
        float(meta["test_accuracy"]),
        float(meta["floor_frechet"]),
        meta["dataset_sha256"],
        path,
        float(meta.get("train_seconds", "0")),
    )


def cached_classifier(dataset: Dataset) -> Classifier | None:
    """The cached classifier for ``dataset`` if a good one is there (a damaged or foreign file is reported, not used)."""
    path = cache_path(dataset)
    if not path.exists():
        return None
    try:
        clf = load_classifier(path)
    except CheckpointError as exc:
        log.warning(f"{exc}; it will be retrained")
        return None
    if clf.dataset_sha256 != dataset.sha256:
        log.warning(f"{path} belongs to another dataset; it will be retrained")
        return None
    return clf


def estimate_training_seconds(dataset: Dataset, epochs: int = 10, batch_size: int = 50, steps: int = 10, warmup: int = 3) -> float:
    """About how long :func:`train_classifier` will take here: a few timed steps, scaled up."""
    model = DigitCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = to_unit_float(dataset.train_images[:batch_size])
    y = dataset.train_labels[:batch_size]
    times = []
    for _ in range(warmup + steps):  # the first steps pay for kernel selection and allocation
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    timed = sorted(times[warmup:])
    return timed[len(timed) // 2] * epochs * -(-len(dataset.train_labels) // batch_size)


def get_classifier(dataset: Dataset, retrain: bool = False, require_accuracy: float | None = None) -> Classifier:
    """The cached classifier for ``dataset``, training (and caching) it first if needed.

    A damaged or outdated cache file is replaced. ``require_accuracy`` only warns: a weak judge
    is still reported, with its accuracy, rather than silently hidden.
    """
    path = cache_path(dataset)
    clf = None if retrain else cached_classifier(dataset)
    if clf is not None:
        return clf
    clf = train_classifier(dataset)
    save_classifier(clf, path)
    log.info(f"classifier cached in {path}")
    need = MIN_ACCURACY if require_accuracy is None else require_accuracy
    if clf.test_accuracy < need:
        log.warning(f"classifier test accuracy {clf.test_accuracy:.4f} is below {need:.2f}; sample-quality numbers are less trustworthy")
    return clf
