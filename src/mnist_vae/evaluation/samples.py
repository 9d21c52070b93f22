"""Sample quality: metrics from a digit classifier's outputs (pure functions of arrays) and :func:`sample_quality`.

The classifier itself lives in :mod:`.classifier`; the metrics are made from its predicted
probabilities and penultimate-layer features, so they can be tested on hand-made inputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..models import VAE

N_CLASSES = 10
COVERAGE_SHARE = 0.05  # a class is "covered" when it receives at least this share of the samples
MIN_CONFIDENCE = 0.5  # below this top-class probability a sample counts as unreadable
#: Below this total ink (sum of pixel intensities in [0, 1]) an image counts as blank. A typical
#: MNIST digit has about 100; 10 is roughly a single short stroke.
MIN_INK = 10.0


def class_histogram(predicted: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts of each predicted class (integer labels) as an int64 array of length ``n_classes``."""
    pred = np.asarray(predicted, dtype=np.int64).reshape(-1)
    return np.bincount(pred, minlength=n_classes)[:n_classes]


def coverage(counts: Any, min_share: float = COVERAGE_SHARE) -> int:
    """Number of classes whose share of all samples is at least ``min_share``."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0
    return int((counts / total >= min_share).sum())


def normalized_entropy(counts: Any) -> float:
    """Entropy of the class histogram divided by log(number of classes): 1 = uniform, 0 = one class."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0 or len(counts) < 2:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(len(counts)))


def ink(images: Any) -> np.ndarray:
    """Total ink per image: the sum of its pixel intensities in [0, 1] ([N, ...] -> [N])."""
    arr = np.asarray(images, dtype=np.float64)
    return arr.reshape(len(arr), -1).sum(1)


def blank_mask(confidence: Any, ink_per_image: Any, min_confidence: float = MIN_CONFIDENCE, min_ink: float = MIN_INK) -> np.ndarray:
    """True where a sample is blank (ink below ``min_ink``) or unreadable (confidence below ``min_confidence``)."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    amount = np.asarray(ink_per_image, dtype=np.float64).reshape(-1)
    return (conf < min_confidence) | (amount < min_ink)


def blank_rate(confidence: Any, ink_per_image: Any, min_confidence: float = MIN_CONFIDENCE, min_ink: float = MIN_INK) -> float:
    """Fraction of samples that are blank or unreadable (see :func:`blank_mask`)."""
    mask = blank_mask(confidence, ink_per_image, min_confidence, min_ink)
    return float(mask.mean()) if mask.size else 0.0


def _sqrtm_psd(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, F] and [M, F].

    ‖μa − μb‖² + tr Σa + tr Σb − 2 tr (Σa^½ Σb Σa^½)^½. Both square roots are of symmetric PSD
    matrices, so an eigen-decomposition is exact and never returns complex values (unlike a
    general ``sqrtm`` of Σa Σb); tiny negative eigenvalues from rounding are clipped to zero.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be [N, F] with the same F, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("each feature set needs at least 2 rows for a covariance")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(d, 0.0)


def summarize(
    probabilities: Any, images: Any, min_share: float = COVERAGE_SHARE, min_confidence: float = MIN_CONFIDENCE, min_ink: float = MIN_INK
) -> dict[str, Any]:
    """Histogram, coverage, entropy and blank rate from class probabilities [N, 10] and images [N, 28, 28].

    The histogram counts every sample's most likely class, blank ones included, so coverage says
    which digits the samples look most like; the blank rate says how many are not digits at all.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    counts = class_histogram(probs.argmax(1), probs.shape[1])
    return {
        "n": int(len(probs)),
        "histogram": counts.tolist(),
        "coverage": coverage(counts, min_share),
        "entropy": normalized_entropy(counts),
        "blank_rate": blank_rate(probs.max(1), ink(images), min_confidence, min_ink),
    }


#: Codes decoded per call when generating samples for the quality metrics.
SAMPLE_BATCH = 2000


def sample_quality(model: VAE, classifier: Any, reference: torch.Tensor, n: int = 10000, seed: int = 0) -> dict[str, Any]:
    """Class histogram, coverage, entropy, blank rate and Fréchet distance (to ``reference`` images) of n samples."""
    samples = model.inference_copy().sample(n, torch.Generator().manual_seed(seed), batch_size=SAMPLE_BATCH).cpu()
    probs, feats = classifier.predict(samples)
    _, ref_feats = classifier.predict(reference)
    out = summarize(probs.numpy(), samples.numpy())
    out["frechet"] = frechet_distance(feats.numpy(), ref_feats.numpy()) if n > 1 else float("nan")
    out["frechet_floor"] = classifier.floor_frechet
    out["seed"] = seed
    return out


#: Test-digit pairs whose latent midpoint is decoded, and the confidence above which the classifier reads it.
MIDPOINT_PAIRS = 1000
CONFIDENT = 0.9


@torch.inference_mode()
def midpoint_readability(
    model: VAE, classifier: Any, images: torch.Tensor, pairs: int = MIDPOINT_PAIRS, seed: int = 0, confident: float = CONFIDENT
) -> float:
    """Share of decoded latent midpoints between two random test digits that the classifier reads confidently.

    For each of ``pairs`` seeded pairs (a, b), z = (μ(a) + μ(b)) / 2 is decoded and the classifier's
    top probability compared with ``confident``. A regular latent space decodes the space between
    two codes into digits; an autoencoder's often decodes it into smudges.
    """
    n = len(images)
    if n < 2:
        return float("nan")
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (pairs,), generator=g)
    b = (a + torch.randint(1, n, (pairs,), generator=g)) % n  # never the same digit twice
    mu_a, _ = model.encode(images[a].to(model.device))
    mu_b, _ = model.encode(images[b].to(model.device))
    decoded = model.decode_probs(((mu_a + mu_b) / 2).float()).cpu()
    probs, _ = classifier.predict(decoded)
    return float((probs.max(1).values >= confident).double().mean())
