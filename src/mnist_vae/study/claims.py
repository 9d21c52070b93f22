"""The claims of the original write-up, each with the measurement that tests it.

Every claim is data: the configurations it needs, the claim in a few words, how it is measured,
and a function that turns one run's table row into a number (a difference of two configurations is
then paired by seed with :func:`~mnist_vae.stats.paired`) or, for a measurement of two curves at
once, a function of the two runs of one seed. :func:`evaluate_claims` computes the per-seed values,
their interval and a verdict: **supported** (the 95% interval lies on the claimed side),
**contradicted** (on the other side), **inconclusive** (it contains the threshold, or one seed only).
Each claim declares the kind of number it measures: a measure with a known range (``bounds``: a
share, an entropy, a count, epochs) gets the betting confidence sequence, valid whatever the shape
of its values (:mod:`mnist_vae.stats.betting`); an unbounded one (nats, a Fréchet distance) gets the
Student-t interval in a fixed-seed study and the anytime-valid t-mixture in a study that adds seeds
while it looks (``--until-settled``, :mod:`mnist_vae.stats.sequential`). The claims are one family:
:func:`evaluate_claims` marks which verdicts hold at a family-wise 5% (Holm's method).
A claim the study cannot measure (a configuration is missing, or the runs are too short for it)
says why instead of inventing a number.

Measurement conventions (docs/evaluation.md explains them):

- "clear reconstructions": the share of test digits whose reconstruction (decoded μ) the digit
  classifier reads as the right digit, against 90%;
- "stabilised by epoch E": the first epoch whose test reconstruction loss is within 2% of its final value;
- "unstable curves": roughness of the per-epoch training loss, the mean |second difference| after epoch 5;
- "converges faster": epochs to reach a level both runs of a seed reach (within 1% of the worse final test loss);
- "repetitive / diverse": the entropy of the class histogram of 10,000 samples (1 = uniform over the digits);
- "blank or noisy samples": the share of samples that are blank or that the classifier cannot read (confidence < 0.5);
- "latent space regularity": the share of prior samples that decode to readable digits (1 − that share);
- "smooth interpolation": the share of decoded latent midpoints between two test digits read with confidence >= 0.9.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..stats import Direction, Interval, paired, verdict
from ..stats.procedures import BOUNDED, FIXED, SEQUENTIAL, p_value, procedure_name, seeds_to_settle, test
from ..stats.sequential import holm

Row = dict[str, Any]
#: The range of a measure, fixed before any study runs, or a function of the runs' epochs; None: unbounded.
Bounds = tuple[float, float] | Callable[[int], tuple[float, float]] | None
SHARE: tuple[float, float] = (0.0, 1.0)  # shares, accuracies and normalized entropies


def epoch_range(epochs: int) -> tuple[float, float]:
    """An epoch number of a run of ``epochs`` epochs lies in [1, epochs]."""
    return 1.0, float(epochs)


def epoch_gap_range(epochs: int) -> tuple[float, float]:
    """A difference of two epoch numbers of runs of ``epochs`` epochs lies in [−(epochs − 1), epochs − 1]."""
    return -(epochs - 1.0), epochs - 1.0


STABLE_WITHIN = 0.02  # "stabilised": within 2% of the final value
LEVEL_WITHIN = 0.01  # "converged": within 1% of the worse final loss of the pair
ROUGH_FROM_EPOCH = 5  # roughness ignores the first, steep epochs
CLEAR_ACCURACY = 0.90  # "clear": the classifier reads at least 90% of reconstructions as the right digit
OFTEN_BLANK = 0.10  # "often blank": more than 10% of samples blank or unreadable
FULL_COVERAGE = 9.5  # "covers 0-9": coverage (classes with >= 5% of samples) of 10, i.e. above 9.5
CURVE_EPOCHS = 10  # a claim about the shape of a curve over epochs needs at least this many
#: Smallest differences that matter, fixed before any study ran (issue 27), each with its reason.
ENTROPY_MARGIN = (
    0.01,
    "0.01 of normalized entropy: one digit drawn 17% of the time and the others evenly, the least repetition a reader sees",
)
PROBE_MARGIN = (0.01, "one point of probe accuracy: below the ±0.013 binomial noise of one probe scored on 2,000 test digits")
NLL_MARGIN = (1.0, "one nat per image: the smallest NLL gap the write-up's comparisons (tens of nats) would call a difference")
EPOCH_MARGIN = (2.0, "two epochs of 50 to reach the same test loss: within the epoch-to-epoch wobble of one run's curve")
ROUGH_MARGIN = (
    0.05,
    "0.05 nats of mean |second difference|: a tenth of the per-epoch loss change late in training, not visible on a curve",
)
#: The write-up's protocol; a study that differs says so above its claim table.
WRITEUP_EPOCHS = 50
WRITEUP_PROTOCOL: dict[str, Any] = {"epochs": WRITEUP_EPOCHS, "dataset": "mnist", "binarize": "none"}


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


def readable(row: Row) -> float:
    """Share of prior samples that decode to readable digits (1 − blank rate)."""
    return 1.0 - float(row["blank_rate"])


@dataclass(frozen=True)
class Claim:
    """One claim of the write-up (or beyond it), with the measurement that tests it.

    ``group`` is where the table lists it (a configuration, or "reflections"); ``configs`` are the
    configurations it needs, A or (A, B). Exactly one of ``metric`` (one run's number; with two
    configurations the claim is about A − B, paired by seed) and ``joint`` (a number from A's and
    B's runs of the same seed) is given. ``min_epochs``: runs shorter than this cannot tell.
    ``bounds``: the range of the metric's number (or of the joint number), which picks the procedure.
    ``margin`` (with ``margin_why``, its reason in a line): fixed before any study runs; a claim whose whole
    interval lies within threshold ± margin is settled as **negligible**.
    """

    group: str
    text: str
    measure: str
    direction: Direction
    configs: tuple[str, ...]
    metric: Callable[[Row], float] | None = None
    joint: Callable[[Row, Row], float] | None = None
    threshold: float = 0.0
    unit: str = ""
    source: str = "write-up"  # or "finding" (the study's own earlier findings), "beyond" (issue-driven)
    fmt: str = "{:.2f}"
    min_epochs: int = 1
    epochs_why: str = ""
    bounds: Bounds = None
    margin: float | None = None  # the smallest difference from the threshold that matters; inside it: "negligible"
    margin_why: str = ""

    def __post_init__(self) -> None:
        if (self.metric is None) == (self.joint is None) or not 1 <= len(self.configs) <= 2:
            raise ValueError(f"claim {self.text!r}: give metric or joint, and one or two configurations")
        if self.joint is not None and len(self.configs) != 2:
            raise ValueError(f"claim {self.text!r}: a joint measurement needs two configurations")
        if self.margin is not None and (self.margin <= 0 or not self.margin_why):
            raise ValueError(f"claim {self.text!r}: a margin must be positive and say why it is the smallest that matters")


def _curve(why: str) -> dict[str, Any]:
    return {"min_epochs": CURVE_EPOCHS, "epochs_why": why}


CLAIMS: tuple[Claim, ...] = (
    Claim("baseline", "reconstruction loss decreased and stabilised by epoch 20",
          "first epoch whose test reconstruction loss is within 2% of its final value", "less", ("baseline",),
          metric=lambda r: stabilised_epoch(r["test_recon_history"]), threshold=20.5, unit="epoch", fmt="{:.1f}",
          min_epochs=WRITEUP_EPOCHS, epochs_why="it names epoch 20 of the write-up's 50", bounds=epoch_range),
    Claim("baseline", "KL divergence increased gradually", "test KL after the last epoch minus after the first", "greater",
          ("baseline",), metric=lambda r: r["test_kl_history"][-1] - r["test_kl_history"][0], unit="nats",
          **_curve("a trend over epochs")),
    Claim("baseline", "reconstructions were clear", "share of test reconstructions the digit classifier reads right, vs 90%",
          "greater", ("baseline",), metric=metric("recon_accuracy"), threshold=CLEAR_ACCURACY, fmt="{:.3f}", bounds=SHARE),
    Claim("baseline", "generated samples often lacked detail or were blank", "share of samples blank or unreadable, vs 10%",
          "greater", ("baseline",), metric=metric("blank_rate"), threshold=OFTEN_BLANK, fmt="{:.3f}", bounds=SHARE),
    Claim("deeper-decoder", "reconstructions became sharper", "reconstruction BCE at z = μ, deeper-decoder − baseline",
          "less", ("deeper-decoder", "baseline"), metric=metric("recon_mu"), unit="nats"),
    Claim("deeper-decoder", "generated digits remained repetitive (no more diverse than baseline)",
          "class-histogram entropy of samples, deeper-decoder − baseline (≤ 0 claimed)", "less", ("deeper-decoder", "baseline"),
          metric=metric("entropy"), fmt="{:.3f}", bounds=SHARE, margin=ENTROPY_MARGIN[0], margin_why=ENTROPY_MARGIN[1]),
    Claim("deeper-decoder", "KL divergence slightly higher", "test KL, deeper-decoder − baseline", "greater",
          ("deeper-decoder", "baseline"), metric=metric("kl"), unit="nats"),
    Claim("dropout", "training loss curves became unstable", "roughness of the per-epoch training loss, dropout − baseline",
          "greater", ("dropout", "baseline"), metric=lambda r: roughness(r["train_loss_history"]), unit="nats", fmt="{:.3f}",
          margin=ROUGH_MARGIN[0], margin_why=ROUGH_MARGIN[1],
          **_curve("roughness is measured after epoch 5")),
    Claim("dropout", "generated images showed incomplete or noisy digits", "share of samples blank or unreadable, dropout − baseline",
          "greater", ("dropout", "baseline"), metric=metric("blank_rate"), fmt="{:.3f}", bounds=SHARE),
    Claim("dropout", "dropout alone did not improve diversity", "class-histogram entropy of samples, dropout − baseline (≤ 0 claimed)",
          "less", ("dropout", "baseline"), metric=metric("entropy"), fmt="{:.3f}", bounds=SHARE, margin=ENTROPY_MARGIN[0],
          margin_why=ENTROPY_MARGIN[1]),
    Claim("optimized", "reconstructions were consistent and clear", "share of test reconstructions the digit classifier reads right, vs 90%",
          "greater", ("optimized",), metric=metric("recon_accuracy"), threshold=CLEAR_ACCURACY, fmt="{:.3f}", bounds=SHARE),
    Claim("optimized", "generated samples covered digits 0–9", "digits with at least 5% of 10,000 samples (10 claimed)", "greater",
          ("optimized",), metric=metric("coverage"), threshold=FULL_COVERAGE, fmt="{:.1f}", bounds=(0.0, 10.0)),
    Claim("optimized", "convergence was faster", "epochs to reach a test loss both reach, optimized − baseline", "less",
          ("optimized", "baseline"), joint=convergence_gap, unit="epochs", fmt="{:.1f}", bounds=epoch_gap_range, **_curve("convergence over epochs")),
    Claim("reflections", "samples improved from early to refined settings", "Fréchet distance of samples, optimized − baseline",
          "less", ("optimized", "baseline"), metric=metric("frechet")),
    Claim("reflections", "the LSTM encoder improved feature extraction compared with a dense encoder",
          "latent probe accuracy (logistic regression on μ), optimized − dense-encoder", "greater", ("optimized", "dense-encoder"),
          metric=metric("probe_accuracy"), fmt="{:.3f}", bounds=SHARE, margin=PROBE_MARGIN[0], margin_why=PROBE_MARGIN[1]),
    Claim("reflections", "learning-rate adjustments affected convergence speed and stability",
          "epochs to a common test loss, fast-lr (lr 0.001) − baseline (lr 0.0005)", "differs", ("fast-lr", "baseline"),
          joint=convergence_gap, unit="epochs", fmt="{:.1f}", bounds=epoch_gap_range, margin=EPOCH_MARGIN[0], margin_why=EPOCH_MARGIN[1],
          **_curve("convergence over epochs")),
    Claim("reflections", "excessive dropout reduced output quality", "NLL, dropout − baseline", "greater", ("dropout", "baseline"),
          metric=metric("nll"), unit="nats"),
    Claim("reflections", "KL divergence helped maintain latent space regularity",
          "share of prior samples decoded to readable digits, optimized − no-kl (the same model without the KL term)",
          "greater", ("optimized", "no-kl"), metric=readable, fmt="{:.3f}", bounds=SHARE),
    Claim("reflections", "KL divergence supported smooth interpolation",
          "share of decoded latent midpoints between two test digits read with confidence ≥ 0.9, optimized − no-kl",
          "greater", ("optimized", "no-kl"), metric=metric("midpoint_readable"), fmt="{:.3f}", bounds=SHARE),
    Claim("reflections", "combining sequence modeling and convolutional decoding yielded diverse generative outputs",
          "class-histogram entropy of samples, optimized (LSTM + convolutions) − mlp-vae (dense both ways)", "greater",
          ("optimized", "mlp-vae"), metric=metric("entropy"), fmt="{:.3f}", bounds=SHARE),
    Claim("reflections", "combining sequence modeling and convolutional decoding yielded diverse generative outputs",
          "class-histogram entropy of samples, optimized (LSTM + convolutions) − dense-encoder (the same decoder, no LSTM)",
          "greater", ("optimized", "dense-encoder"), metric=metric("entropy"), fmt="{:.3f}", bounds=SHARE, margin=ENTROPY_MARGIN[0],
          margin_why=ENTROPY_MARGIN[1]),
    Claim("reflections", "the LSTM encoder's latent code is as good as a dense encoder's (earlier finding: it is not)",
          "NLL, optimized − dense-encoder", "less", ("optimized", "dense-encoder"), metric=metric("nll"), unit="nats", source="finding",
          margin=NLL_MARGIN[0], margin_why=NLL_MARGIN[1]),
    Claim("lstm-plus", "beats the standard MLP VAE of pytorch/examples", "NLL, lstm-plus − mlp-vae", "less", ("lstm-plus", "mlp-vae"),
          metric=metric("nll"), unit="nats", source="beyond"),
    Claim("lstm-plus", "beats the dense encoder with the same decoder", "NLL, lstm-plus − dense-encoder", "less",
          ("lstm-plus", "dense-encoder"), metric=metric("nll"), unit="nats", source="beyond"),
    Claim("lstm-plus", "keeps all 16 latent dimensions active", "active units (of 16), vs 15.5", "greater", ("lstm-plus",),
          metric=metric("active_units"), threshold=15.5, fmt="{:.1f}", source="beyond", bounds=(0.0, 16.0)),
)  # fmt: skip

#: The verdicts that settle a claim.
SETTLED = ("supported", "contradicted", "negligible")

__all__ = ["BOUNDED", "SETTLED", "CLAIMS", "FIXED", "SEQUENTIAL", "Claim", "evaluate_claim", "evaluate_claims", "value_bounds"]


def _by_seed(rows: list[Row], config: str) -> dict[int, Row]:
    return {int(r["seed"]): r for r in rows if r["config"] == config}


def claim_values(claim: Claim, rows: list[Row]) -> dict[int, float]:
    """Per seed, the claim's number (seeds both configurations have, for a claim about two)."""
    runs = [_by_seed(rows, c) for c in claim.configs]
    if claim.joint is not None:
        a, b = runs
        return {s: claim.joint(a[s], b[s]) for s in sorted(set(a) & set(b))}
    assert claim.metric is not None
    numbers = [{s: claim.metric(r) for s, r in mine.items()} for mine in runs]
    if len(numbers) == 1:
        return dict(sorted(numbers[0].items()))
    seeds = sorted(set(numbers[0]) & set(numbers[1]))
    diffs = paired(numbers[0], numbers[1]).values  # a_s − b_s in seed order (NaNs dropped)
    kept = [s for s in seeds if math.isfinite(numbers[0][s] - numbers[1][s])]
    return dict(zip(kept, diffs))


def value_bounds(claim: Claim, epochs: int) -> tuple[float, float] | None:
    """The range of the claim's per-seed number for runs of ``epochs`` epochs (a paired difference of a measure in
    [a, b] lies in [a − b, b − a]); None for an unbounded measure."""
    b = claim.bounds(epochs) if callable(claim.bounds) else claim.bounds
    if b is None:
        return None
    if claim.metric is not None and len(claim.configs) == 2:
        return b[0] - b[1], b[1] - b[0]
    return b


def evaluate_claim(claim: Claim, rows: list[Row], sequential: bool = False) -> dict[str, Any]:
    """One row of the claim table: per-seed values, their interval, the verdict, its p-value and what would settle it."""
    out: dict[str, Any] = {
        "config": claim.group,
        "configs": list(claim.configs),
        "claim": claim.text,
        "measure": claim.measure,
        "source": claim.source,
        "direction": claim.direction,
        "threshold": claim.threshold,
        "unit": claim.unit,
        "procedure": procedure_name(claim.bounds is not None, sequential),
        "values": {},
        "effect": None,
        "p": None,
    }
    missing = [c for c in claim.configs if not _by_seed(rows, c)]
    if missing:
        return out | {"verdict": "not measured", "why": f"the study does not include {', '.join(missing)}", "missing": missing}
    epochs = min(int(r["epochs"]) for r in rows if r["config"] in claim.configs)
    if epochs < claim.min_epochs:
        why = f"needs runs of at least {claim.min_epochs} epochs ({claim.epochs_why}); these have {epochs}"
        return out | {"verdict": "not measured", "why": why}
    values = claim_values(claim, rows)
    ordered = [values[s] for s in sorted(values)]
    bounds = value_bounds(claim, epochs)
    tested = test(ordered, claim.threshold, bounds, sequential)
    iv = tested.interval
    out |= {"values": values, "effect": _effect(iv), "verdict": verdict(iv, claim.direction, claim.threshold), "p": tested.p}
    out |= {"bounds": list(bounds) if bounds else None, "margin": claim.margin}
    if claim.margin is not None and iv.n >= 2:
        edges = (claim.threshold - claim.margin, claim.threshold + claim.margin)
        ps = [p_value(ordered, m, bounds, sequential) for m in edges]
        out["p_negligible"] = max(p for p in ps if p is not None)
        if edges[0] < iv.lo and iv.hi < edges[1]:
            out["verdict"] = "negligible"
    if iv.n == 0:
        out["why"] = "no run gives a defined value (too few epochs for this measurement?)"
    if out["verdict"] == "inconclusive":
        need = seeds_to_settle(ordered, claim.threshold, bounds, sequential)
        out["seeds_for_power"] = need
        out["more_seeds"] = None if need is None else max(need - iv.n, 1)
    out["text"] = effect_text(iv, claim)
    return out


def _effect(iv: Interval) -> dict[str, float | int]:
    return {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "sd": iv.sd, "n": iv.n}


def effect_text(iv: Interval, claim: Claim) -> str:
    """``mean [lo, hi]`` with the claim's format, plus the threshold where it is not 0."""
    f = claim.fmt.format
    core = f(iv.mean) if iv.n < 2 or not math.isfinite(iv.hi - iv.lo) else f"{f(iv.mean)} [{f(iv.lo)}, {f(iv.hi)}]"
    unit = f" {claim.unit}" if claim.unit else ""
    versus = f" vs {f(claim.threshold)}" if claim.threshold and len(claim.configs) == 1 else ""
    margin = f" (negligible within ±{f(claim.margin)})" if claim.margin is not None else ""
    return f"{core}{unit}{versus}{margin}"


def evaluate_claims(rows: list[Row], claims: tuple[Claim, ...] = CLAIMS, sequential: bool = False) -> list[dict[str, Any]]:
    """Every claim's row, in catalogue order, with Holm's family-wise view over the claims measured.

    The family is every measured claim's hypothesis "mean = threshold", and for a claim with a margin also
    "|mean − threshold| ≥ margin"; a verdict "holds" family-wise when Holm's step-down rejects the hypothesis
    behind it and the claim's own interval has settled it. With anytime-valid p-values this is valid at
    whatever round the study stops, under any dependence between the claims.
    """
    out = [evaluate_claim(c, rows, sequential) for c in claims]
    # one hypothesis per claim ("mean = threshold"), and one more per claim with a margin ("|mean − threshold| ≥ margin")
    hypotheses = [(i, key) for i, c in enumerate(out) for key in ("p", "p_negligible") if c.get(key) is not None]
    rejected = dict(zip(hypotheses, holm([out[i][key] for i, key in hypotheses], groups=[i for i, _ in hypotheses])))
    for i, c in enumerate(out):
        if c["verdict"] in SETTLED:
            key = "p_negligible" if c["verdict"] == "negligible" else "p"
            c["holm"] = "holds" if rejected.get((i, key)) else "not at family-wise 5%"
        elif c["p"] is not None:
            c["holm"] = "—"
    return out


def protocol_differences(meta: dict[str, Any]) -> list[str]:
    """How a study's protocol differs from the write-up's (epochs, dataset, binarisation), in words."""
    out = []
    if meta.get("epochs") != WRITEUP_PROTOCOL["epochs"]:
        out.append(f"{meta.get('epochs')} epoch{'' if meta.get('epochs') == 1 else 's'}, not {WRITEUP_PROTOCOL['epochs']}")
    ds = meta.get("dataset", {})
    if ds.get("name") != WRITEUP_PROTOCOL["dataset"]:
        out.append(f"{ds.get('name')} ({ds.get('n_train', 0):,} training digits), not MNIST's 60,000")
    if meta.get("binarize") != WRITEUP_PROTOCOL["binarize"]:
        out.append(f"binarization {meta.get('binarize')}, not grey pixels")
    return out
