"""Sample-quality metrics on hand-made inputs."""

import math

import numpy as np
import pytest

from mnist_vae.evaluation import samples as quality


def test_coverage_and_entropy_one_class_only():
    counts = quality.class_histogram(np.full(1000, 7))
    assert counts.tolist() == [0] * 7 + [1000, 0, 0]
    assert quality.coverage(counts) == 1
    assert quality.normalized_entropy(counts) == 0.0


def test_coverage_and_entropy_uniform_and_threshold():
    assert quality.normalized_entropy([10] * 10) == pytest.approx(1.0)
    assert quality.coverage([10] * 10) == 10
    # 5% exactly counts, just under does not
    counts = [5, 4] + [91 / 8] * 8
    assert quality.coverage(counts) == 9
    assert quality.coverage([0] * 10) == 0


def test_entropy_of_two_equal_classes():
    assert quality.normalized_entropy([50, 50] + [0] * 8) == pytest.approx(math.log(2) / math.log(10))


def test_blank_rate_all_blank_images():
    images = np.zeros((20, 28, 28))
    assert quality.blank_rate(np.ones(20), quality.ink(images)) == 1.0  # confident but no ink


def test_blank_rate_mixes_low_confidence_and_low_ink():
    images = np.zeros((4, 28, 28))
    images[:, 10:18, 12:16] = 1.0  # 32 units of ink: a readable stroke
    images[3] = 0.005  # faint haze: 3.9 units of ink
    conf = np.array([0.9, 0.4, 0.99, 0.99])
    mask = quality.blank_mask(conf, quality.ink(images))
    assert mask.tolist() == [False, True, False, True]
    assert quality.blank_rate(conf, quality.ink(images)) == 0.5


def test_summarize_counts_argmax():
    probs = np.zeros((6, 10))
    probs[:3, 2] = 1.0
    probs[3:, 5] = 0.45
    probs[3:, 6] = 0.55
    images = np.ones((6, 28, 28))
    s = quality.summarize(probs, images)
    assert s["histogram"][2] == 3 and s["histogram"][6] == 3 and s["coverage"] == 2
    assert s["blank_rate"] == 0.0


def test_frechet_of_a_set_with_itself_is_zero():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32))
    assert quality.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_of_a_shifted_copy_is_the_squared_shift():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(300, 8))
    shift = np.arange(8) / 4.0
    assert quality.frechet_distance(feats, feats + shift) == pytest.approx((shift**2).sum(), rel=1e-6)


def test_frechet_of_scaled_gaussians_matches_closed_form():
    # Same mean, covariances I and 4I in F dims: F·(1 + 4 − 2·2) = F, up to sampling noise.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20000, 4))
    b = 2 * rng.normal(size=(20000, 4))
    assert quality.frechet_distance(a, b) == pytest.approx(4.0, abs=0.15)


def test_frechet_rejects_mismatched_features():
    with pytest.raises(ValueError):
        quality.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
