import math

import torch

from mnist_vae.losses import bce_per_image, elbo_terms, kl_per_dim, kl_per_image, kl_weight


def test_kl_is_zero_at_the_prior():
    mu, logvar = torch.zeros(3, 5), torch.zeros(3, 5)
    assert torch.equal(kl_per_image(mu, logvar), torch.zeros(3))


def test_kl_matches_hand_computation():
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, math.log(4.0)]])
    # ½(σ² + μ² − 1 − log σ²) per dim: ½(1+1−1−0) = 0.5 and ½(4+4−1−log 4)
    expected = [0.5, 0.5 * (4 + 4 - 1 - math.log(4.0))]
    assert torch.allclose(kl_per_dim(mu, logvar), torch.tensor([expected]))


def test_loss_against_hand_computation():
    x = torch.zeros(2, 784)
    x[0, :10] = 1.0
    x[1, 5] = 0.25
    logits = torch.zeros(2, 1, 28, 28)
    logits.view(2, -1)[0, 0] = 2.0
    mu, logvar = torch.tensor([[0.5], [0.0]]), torch.tensor([[0.0], [0.0]])

    def bce(p, t):  # the textbook formula on probabilities
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    s = 1 / (1 + math.exp(-2.0))
    img0 = bce(s, 1.0) + 9 * bce(0.5, 1.0) + 774 * bce(0.5, 0.0)
    img1 = bce(0.5, 0.25) + 783 * bce(0.5, 0.0)
    assert torch.allclose(bce_per_image(logits, x), torch.tensor([img0, img1]), atol=1e-4)
    loss, recon, kl = elbo_terms(logits, x, mu, logvar, beta=2.0)
    kl_expected = (0.5 * 0.25 + 0.0) / 2
    assert math.isclose(recon.item(), (img0 + img1) / 2, rel_tol=1e-6)
    assert math.isclose(kl.item(), kl_expected, rel_tol=1e-6)
    assert math.isclose(loss.item(), (img0 + img1) / 2 + 2.0 * kl_expected, rel_tol=1e-6)


def test_kl_warmup_is_linear_then_flat():
    assert kl_weight(1.0, 0, 0, 0, 10) == 1.0
    assert kl_weight(1.0, 2, 0, 5, 10) == 0.25
    assert kl_weight(0.5, 2, 1, 0, 10) == 0.25
    assert kl_weight(1.0, 2, 5, 0, 10) == 1.0
