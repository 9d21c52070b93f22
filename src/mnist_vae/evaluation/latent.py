"""What the latent code carries: active units (Burda et al., 2016) and a linear probe of the digit class."""

from __future__ import annotations

import torch
import torch.nn.functional as F

ACTIVE_THRESHOLD = 0.01  # a unit is active when Var_x E_q[z_d] > 0.01


def active_units(mu: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, list[float]]:
    """(number of active latent dimensions, variance over images of E_q[z_d] = μ_d for each d)."""
    var = mu.double().var(0, unbiased=True) if len(mu) > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return int((var > threshold).sum()), var.tolist()


def latent_probe(
    train_mu: torch.Tensor,
    train_y: torch.Tensor,
    test_mu: torch.Tensor,
    test_y: torch.Tensor,
    steps: int = 100,
    weight_decay: float = 1e-4,
    n_classes: int = 10,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted (L-BFGS) on standardized train μ."""
    x = train_mu.double().cpu()
    mean, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / sd
    xt = (test_mu.double().cpu() - mean) / sd
    y = train_y.cpu()
    with torch.enable_grad():
        w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(x @ w + b, y) + weight_decay * (w**2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    with torch.no_grad():
        return float(((xt @ w + b).argmax(1) == test_y.cpu()).double().mean()) if len(xt) else float("nan")
