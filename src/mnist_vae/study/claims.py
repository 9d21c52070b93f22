"""The claims of the original write-up, each with the measurement that tests it.

Every claim is data: which configuration(s), the claim in a few words, how it is measured, and a
function that turns one seed's table row (or a pair of rows with the same seed) into a number.
:func:`evaluate_claims` computes the per-seed values, their interval, and a verdict:
**supported** (the 95% interval lies on the claimed side), **contradicted** (on the other side),
**inconclusive** (it contains the threshold, or one seed only). Claims that cannot be measured
say so instead of inventing a number.

Measurement conventions (docs/evaluation.md explains them):

- "clear reconstructions": the share of test digits whose reconstruction (decoded μ) the digit
  classifier reads as the right digit, against 90%;
- "stabilised by epoch E": the first epoch whose test reconstruction loss is within 2% of its final value;
- "unstable curves": roughness of the per-epoch training loss, the mean |second difference| after epoch 5;
- "converges faster": epochs to reach a level both runs of a seed reach (within 1% of the worse final test loss);
- "repetitive / diverse": the entropy of the class histogram of 10,000 samples (1 = uniform over the digits);
- "blank or noisy samples": the share of samples that are blank or that the classifier cannot read (confidence < 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..stats import Direction, Interval, interval, seeds_needed, verdict

Row = dict[str, Any]
STABLE_WITHIN = 0.02  # "stabilised": within 2% of the final value
LEVEL_WITHIN = 0.01  # "converged": within 1% of the worse final loss of the pair
ROUGH_FROM_EPOCH = 5  # roughness ignores the first, steep epochs
CLEAR_ACCURACY = 0.90  # "clear": the classifier reads at least 90% of reconstructions as the right digit
OFTEN_BLANK = 0.10  # "often blank": more than 10% of samples blank or unreadable
FULL_COVERAGE = 9.5  # "covers 0-9": coverage (classes with >= 5% of samples) of 10, i.e. above 9.5


def stabilised_epoch(history: list[float], within: float = STABLE_WITHIN) -> float:
    """The first epoch (1-based) whose value is within ``within`` (relative) of the last epoch's."""
    final = history[-1]
    return float(next(i + 1 for i, v in enumerate(history) if abs(v - final) <= within * abs(final)))


def roughness(history: list[float], start: int = ROUGH_FROM_EPOCH) -> float:
    """Mean absolute second difference of a per-epoch curve after epoch ``start`` (0 for a straight line)."""
    h = history[start:]
    if len(h) < 3:
        return math.nan
    return sum(abs(h[i - 1] - 2 * h[i] + h[i + 1]) for i in range(1, len(h) - 1)) / (len(h) - 2)


def epochs_to(history: list[float], level: float) -> float:
    """The first epoch (1-based) at or below ``level`` (NaN if never)."""
    return float(next((i + 1 for i, v in enumerate(history) if v <= level), math.nan))


def convergence_gap(a: Row, b: Row) -> float:
    """Epochs A needs minus epochs B needs to reach a level both reach (within 1% of the worse final test loss)."""
    ha, hb = a["test_loss_history"], b["test_loss_history"]
    level = (1 + LEVEL_WITHIN) * max(ha[-1], hb[-1])
    return epochs_to(ha, level) - epochs_to(hb, level)


def metric(key: str) -> Callable[[Row], float]:
    """One seed's value of a table column."""
    return lambda row: float(row[key])


def diff(key: str) -> Callable[[Row, Row], float]:
    """A minus B of a table column, for one seed."""
    return lambda a, b: float(a[key]) - float(b[key])


@dataclass(frozen=True)
class Claim:
    """One claim: ``value`` of a seed's row (``vs`` None) or of a (row, vs-row) pair, compared with ``threshold``."""

    config: str
    text: str
    measure: str
    direction: Direction
    value: Callable[..., float] | None  # None: cannot be measured; ``why`` says so
    vs: str | None = None
    threshold: float = 0.0
    unit: str = ""
    why: str = ""
    source: str = "write-up"  # or "finding" (the study's own earlier findings), "beyond" (issue-driven)
    fmt: str = "{:.2f}"
    configs: tuple[str, ...] = field(default=())

    def needs(self) -> tuple[str, ...]:
        return self.configs or tuple(c for c in (self.config, self.vs) if c)


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "baseline",
        "reconstruction loss decreased and stabilised by epoch 20",
        "first epoch whose test reconstruction loss is within 2% of its final value",
        "less",
        lambda r: stabilised_epoch(r["test_recon_history"]),
        threshold=20.5,
        unit="epoch",
        fmt="{:.1f}",
    ),
    Claim(
        "baseline",
        "KL divergence increased gradually",
        "test KL after the last epoch minus after the first",
        "greater",
        lambda r: r["test_kl_history"][-1] - r["test_kl_history"][0],
        unit="nats",
    ),
    Claim(
        "baseline",
        "reconstructions were clear",
        "share of test reconstructions the digit classifier reads right, vs 90%",
        "greater",
        metric("recon_accuracy"),
        threshold=CLEAR_ACCURACY,
        fmt="{:.3f}",
    ),
    Claim(
        "baseline",
        "generated samples often lacked detail or were blank",
        "share of samples blank or unreadable, vs 10%",
        "greater",
        metric("blank_rate"),
        threshold=OFTEN_BLANK,
        fmt="{:.3f}",
    ),
    Claim(
        "deeper-decoder",
        "reconstructions became sharper",
        "reconstruction BCE at z = μ, deeper-decoder − baseline",
        "less",
        diff("recon_mu"),
        vs="baseline",
        unit="nats",
    ),
    Claim(
        "deeper-decoder",
        "generated digits remained repetitive (no more diverse than baseline)",
        "class-histogram entropy of samples, deeper-decoder − baseline (≤ 0 claimed)",
        "less",
        diff("entropy"),
        vs="baseline",
        fmt="{:.3f}",
    ),
    Claim(
        "deeper-decoder",
        "KL divergence slightly higher",
        "test KL, deeper-decoder − baseline",
        "greater",
        diff("kl"),
        vs="baseline",
        unit="nats",
    ),
    Claim(
        "dropout",
        "training loss curves became unstable",
        "roughness of the per-epoch training loss, dropout − baseline",
        "greater",
        lambda a, b: roughness(a["train_loss_history"]) - roughness(b["train_loss_history"]),
        vs="baseline",
        unit="nats",
        fmt="{:.3f}",
    ),
    Claim(
        "dropout",
        "generated images showed incomplete or noisy digits",
        "share of samples blank or unreadable, dropout − baseline",
        "greater",
        diff("blank_rate"),
        vs="baseline",
        fmt="{:.3f}",
    ),
    Claim(
        "dropout",
        "dropout alone did not improve diversity",
        "class-histogram entropy of samples, dropout − baseline (≤ 0 claimed)",
        "less",
        diff("entropy"),
        vs="baseline",
        fmt="{:.3f}",
    ),
    Claim(
        "optimized",
        "reconstructions were consistent and clear",
        "share of test reconstructions the digit classifier reads right, vs 90%",
        "greater",
        metric("recon_accuracy"),
        threshold=CLEAR_ACCURACY,
        fmt="{:.3f}",
    ),
    Claim(
        "optimized",
        "generated samples covered digits 0–9",
        "digits with at least 5% of 10,000 samples (10 claimed)",
        "greater",
        metric("coverage"),
        threshold=FULL_COVERAGE,
        fmt="{:.1f}",
    ),
    Claim(
        "optimized",
        "convergence was faster",
        "epochs to reach a test loss both reach, optimized − baseline",
        "less",
        convergence_gap,
        vs="baseline",
        unit="epochs",
        fmt="{:.1f}",
    ),
    Claim(
        "all",
        "samples improved from early to refined settings",
        "Fréchet distance of samples, optimized − baseline",
        "less",
        diff("frechet"),
        vs="baseline",
        configs=("optimized", "baseline"),
    ),
    Claim(
        "reflection",
        "the LSTM encoder improved feature extraction compared with a dense encoder",
        "latent probe accuracy (logistic regression on μ), optimized − dense-encoder",
        "greater",
        diff("probe_accuracy"),
        vs="dense-encoder",
        configs=("optimized", "dense-encoder"),
        fmt="{:.3f}",
    ),
    Claim(
        "reflection",
        "learning-rate adjustments affected convergence speed and stability",
        "epochs to a common test loss, fast-lr (lr 0.001) − baseline (lr 0.0005)",
        "differs",
        convergence_gap,
        vs="baseline",
        configs=("fast-lr", "baseline"),
        unit="epochs",
        fmt="{:.1f}",
    ),
    Claim(
        "reflection",
        "excessive dropout reduced output quality",
        "NLL, dropout − baseline",
        "greater",
        diff("nll"),
        vs="baseline",
        configs=("dropout", "baseline"),
        unit="nats",
    ),
    Claim(
        "reflection",
        "the LSTM encoder's latent code is as good as a dense encoder's (earlier finding: it is not)",
        "NLL, optimized − dense-encoder",
        "less",
        diff("nll"),
        vs="dense-encoder",
        configs=("optimized", "dense-encoder"),
        unit="nats",
        source="finding",
    ),
    Claim(
        "lstm-plus",
        "beats the standard MLP VAE of pytorch/examples",
        "NLL, lstm-plus − mlp-vae",
        "less",
        diff("nll"),
        vs="mlp-vae",
        unit="nats",
        source="beyond",
    ),
    Claim(
        "lstm-plus",
        "beats the dense encoder with the same decoder",
        "NLL, lstm-plus − dense-encoder",
        "less",
        diff("nll"),
        vs="dense-encoder",
        unit="nats",
        source="beyond",
    ),
    Claim(
        "lstm-plus",
        "keeps all 16 latent dimensions active",
        "active units (of 16), vs 15.5",
        "greater",
        metric("active_units"),
        threshold=15.5,
        fmt="{:.1f}",
        source="beyond",
    ),
)


def _by_seed(rows: list[Row], config: str) -> dict[int, Row]:
    return {int(r["seed"]): r for r in rows if r["config"] == config}


def evaluate_claim(claim: Claim, rows: list[Row]) -> dict[str, Any]:
    """One row of the claim table: per-seed values, their interval, the verdict and what would settle it."""
    out: dict[str, Any] = {
        "config": claim.config,
        "claim": claim.text,
        "measure": claim.measure,
        "source": claim.source,
        "direction": claim.direction,
        "threshold": claim.threshold,
        "unit": claim.unit,
    }
    missing = [c for c in claim.needs() if not _by_seed(rows, c)]
    if claim.value is None or missing:
        why = claim.why or f"the study does not include {', '.join(missing)}"
        return out | {"verdict": "not measured", "why": why, "values": {}, "effect": None}
    a = _by_seed(rows, claim.needs()[0])
    if claim.vs is None:
        values = {s: claim.value(r) for s, r in a.items()}
    else:
        b = _by_seed(rows, claim.vs)
        values = {s: claim.value(a[s], b[s]) for s in sorted(set(a) & set(b))}
    iv = interval([values[s] for s in sorted(values)])
    out |= {"values": values, "effect": _effect(iv), "verdict": verdict(iv, claim.direction, claim.threshold)}
    if iv.n == 0:
        out["why"] = "no run gives a defined value (too few epochs for this measurement?)"
    if out["verdict"] == "inconclusive":
        need = seeds_needed(iv, claim.threshold)
        out["more_seeds"] = None if need is None else max(need - iv.n, 1)
    out["text"] = effect_text(iv, claim)
    return out


def _effect(iv: Interval) -> dict[str, float | int]:
    return {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "sd": iv.sd, "n": iv.n}


def effect_text(iv: Interval, claim: Claim) -> str:
    """``mean [lo, hi]`` with the claim's format, plus the threshold where it is not 0."""
    f = claim.fmt.format
    core = f(iv.mean) if iv.n < 2 else f"{f(iv.mean)} [{f(iv.lo)}, {f(iv.hi)}]"
    unit = f" {claim.unit}" if claim.unit else ""
    versus = f" vs {f(claim.threshold)}" if claim.threshold and claim.vs is None else ""
    return f"{core}{unit}{versus}"


def evaluate_claims(rows: list[Row], claims: tuple[Claim, ...] = CLAIMS) -> list[dict[str, Any]]:
    """Every claim's row, in catalogue order."""
    return [evaluate_claim(c, rows) for c in claims]


def summary_interval(rows: list[Row], config: str, key: str) -> Interval:
    """Mean and 95% interval over seeds of one column of one configuration."""
    return interval([float(r[key]) for r in rows if r["config"] == config])
