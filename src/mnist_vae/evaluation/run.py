"""``evaluate_run``: every measurement of a trained run, written to ``RUN/eval.json``; and its printed table."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import torch

from ..config import EvalConfig
from ..data import Dataset, prepare_data
from ..errors import DataError
from ..models import count_parameters
from ..runs.folder import check_same_data, open_run
from ..runtime.device import resolve_device, resolve_precision
from ..runtime.logging import progress as show_progress
from .classifier import cached_classifier, estimate_training_seconds, get_classifier
from .elbo import elbo_report, encode_all
from .latent import active_units, latent_probe
from .likelihood import decoder_rate, importance_nll
from .result import EvalResult
from .samples import midpoint_readability, sample_quality

log = logging.getLogger(__name__)


def evaluate_run(
    run_dir: str | Path,
    settings: EvalConfig = EvalConfig(),
    classifier: Any = None,
    dataset: Dataset | None = None,
    progress: bool = False,
    device: str = "cpu",
    screen: bool = False,
) -> EvalResult:
    """Evaluate a run folder's newest checkpoint on the exact test tensors it was trained against.

    Says first what it will do and about how long the slow parts take (training the digit
    classifier when it is not cached yet; the NLL, from a timed pass of its decoder). Writes
    ``RUN/eval.json`` (atomically) and returns the same :class:`~.result.EvalResult`. ``classifier`` (anything with
    ``predict(images) -> (probs, features)`` and ``floor_frechet``) defaults to the cached digit
    classifier for the run's dataset; ``dataset`` replaces loading the one the run's config names
    (its checksum must match the run's). ``device`` runs the model and the NLL there. ``screen``
    measures only what an ablation screen needs: test ELBO terms, the NLL and active units (no
    classifier, samples or probe).
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    s = resolved(settings, dev)
    run = open_run(run_dir, device=dev)
    data = prepare_data(run.config, dev, dataset=dataset)
    check_same_data(run.path, data.dataset, error=DataError)
    model = run.model.eval()
    classifier = _announce(run, data.dataset, s, classifier, screen)
    ev = elbo_report(model, data.test_x, seed=s.seed)
    iwae = _nll(model, data.test_x, s, progress)
    test_mu, _ = encode_all(model, data.test_x)
    active, mu_variance = active_units(test_mu)
    result = EvalResult(
        run=str(run.path),
        config=run.config.name,
        epoch=run.epoch,
        dataset=data.dataset.info(),
        binarized=run.config.train.binarize != "none",
        binarize=run.config.train.binarize,
        n_test=len(data.test_x),
        device=str(dev),
        **ev,
        iwae=iwae,
        active_units=active,
        mu_variance=mu_variance,
        parameters=count_parameters(model),
    )
    if screen:
        result.screen = True
        return _finish(result, run.path, t0)
    train_mu, _ = encode_all(model, data.train_x)
    result.probe_accuracy = latent_probe(train_mu, data.dataset.train_labels, test_mu, data.test_labels, steps=s.probe_steps)
    reference = data.dataset.test_images.float() / 255.0  # grey test digits: what the classifier knows
    result.samples = sample_quality(model, classifier, reference, n=s.n_samples, seed=s.seed)
    result.recon_accuracy = reconstruction_accuracy(model, data.test_x, data.test_labels, classifier)
    result.midpoint_readable = midpoint_readability(model, classifier, data.test_x, seed=s.seed)
    if hasattr(classifier, "test_accuracy"):
        result.classifier_accuracy = classifier.test_accuracy
    return _finish(result, run.path, t0)


def _finish(result: EvalResult, run_dir: Path, t0: float) -> EvalResult:
    result.eval_seconds = round(time.perf_counter() - t0, 3)
    result.write(run_dir)
    return result


def resolved(settings: EvalConfig, device: torch.device) -> EvalConfig:
    """``settings`` with precision ``auto`` made concrete for ``device`` (bf16 where it is native there)."""
    precision = resolve_precision(settings.precision, device)
    return dataclasses.replace(settings, precision="bf16" if precision == "bf16" else "fp32")


def _announce(run: Any, ds: Dataset, s: EvalConfig, classifier: Any, screen: bool = False) -> Any:
    """Say what the evaluation will do and how long its slow parts should take; return the digit classifier (None for a screen)."""
    log.info(f"evaluating {run.path} ({run.config.name}, epoch {run.epoch}) on {len(ds.test_labels):,} test digits")
    clf = classifier if classifier is not None or screen else cached_classifier(ds)
    if clf is None and not screen:
        seconds = estimate_training_seconds(ds)
        log.info(
            f"  first: the digit classifier that judges samples is not cached for this dataset yet; training it "
            f"(once per dataset), about {seconds:.0f} s"
        )
    passes = s.k * len(ds.test_labels)
    rate = decoder_rate(run.model, s.chunk, s.precision, codes=passes)
    log.info(
        f"  NLL: K = {s.k:,} importance samples x {len(ds.test_labels):,} images = {passes:,} decoder passes, "
        f"about {passes / rate:.0f} s at the {rate:,.0f} passes/s measured just now"
    )
    if screen:
        log.info("  then: active units (a screen: no classifier, samples or probe)")
        return None
    log.info(f"  then: active units, a latent probe, {s.n_samples:,} samples and the test reconstructions judged by the classifier")
    return clf or get_classifier(ds)


def _nll(model: Any, test_x: torch.Tensor, s: EvalConfig, progress: bool) -> dict[str, Any]:
    bar = show_progress(len(test_x), f"NLL K={s.k}", unit="img", enabled=progress)
    try:
        report = (lambda done, _total: bar.update(done - bar.n)) if bar else None
        iwae = importance_nll(model, test_x, k=s.k, chunk=s.chunk, seed=s.seed, precision=s.precision, progress=report)
    finally:
        if bar is not None:
            bar.close()
    log.info(f"importance-weighted NLL (K={s.k}) in {iwae['seconds']:.1f} s")
    return iwae


@torch.inference_mode()
def reconstruction_accuracy(model: Any, images: torch.Tensor, labels: torch.Tensor, classifier: Any, batch: int = 500) -> float:
    """Share of test digits whose reconstruction (decoded μ) the classifier reads as the right digit."""
    recon = torch.cat([model.reconstruct(images[i : i + batch]).cpu() for i in range(0, len(images), batch)])
    probs, _ = classifier.predict(recon)
    return float((probs.argmax(1) == labels.cpu()).double().mean()) if len(recon) else float("nan")


def format_eval(result: EvalResult) -> str:
    """The human-readable table ``mnist-vae evaluate`` prints (of a full evaluation, not a screen)."""
    iw, s = result.iwae, result.samples or {}
    nan = float("nan")
    unit = "nats per image"
    lines = [
        f"run {result.run}  ({result.config}, epoch {result.epoch}, {result.n_test:,} test images)",
        f"  test −ELBO            {result.elbo:10.2f}  {unit} (one z per image)",
        f"    reconstruction      {result.recon:10.2f}",
        f"    KL                  {result.kl:10.2f}",
        f"  reconstruction, z = μ {result.recon_mu:10.2f}",
        f"  reconstructions right {result.recon_accuracy if result.recon_accuracy is not None else nan:10.4f} (share the digit classifier reads as their digit)",
        f"  midpoints readable    {result.midpoint_readable if result.midpoint_readable is not None else nan:10.4f} (decoded latent midpoints of test-digit pairs read with confidence >= 0.9)",
        f"  {'NLL (IWAE, K=' + format(iw['k'], ',') + ')':<22}{iw['nll']:10.2f} ± {iw['stderr']:.2f} (standard error over images)",
        f"  active units          {result.active_units:10d} of {len(result.mu_variance)}",
        f"  latent probe accuracy {result.probe_accuracy if result.probe_accuracy is not None else nan:10.4f} (logistic regression on μ)",
        f"  samples ({s['n']:,}, seed {s['seed']}):",
        f"    coverage            {s['coverage']:10d} of 10 classes with >= 5%",
        f"    entropy / log 10    {s['entropy']:10.3f}",
        f"    blank or unreadable {s['blank_rate']:10.4f}",
        f"    Fréchet distance    {s['frechet']:10.3f}  (train-vs-test floor {s['frechet_floor']:.3f})",
        f"    class histogram     {' '.join(str(c) for c in s['histogram'])}",
        "  KL per latent dimension: " + " ".join(f"{v:.2f}" for v in result.kl_per_dim),
    ]
    if not result.binarized:
        lines.append(
            "note: pixels are grey (not binarized), so BCE is not a proper likelihood and the NLL is not comparable "
            "with published MNIST numbers; train with --binarize dynamic for those"
        )
    return "\n".join(lines)
