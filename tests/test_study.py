"""A two-configuration, two-epoch study on a slice of the embedded digits writes a correct report."""

import dataclasses
import json

import pytest
import torch

from mnist_vae.cli import build_parser
from mnist_vae.config import EvalConfig
from mnist_vae.data import load_embedded
from mnist_vae.evaluation.classifier import get_classifier, train_classifier
from mnist_vae.presets import get_config
from mnist_vae.study.report import findings
from mnist_vae.study.runner import run_study
from mnist_vae.training import Interrupted, train

from helpers import captured_log


@pytest.fixture(scope="module")
def small():
    ds = load_embedded()
    g = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(ds.train_labels), generator=g)[:1000]
    te = torch.randperm(len(ds.test_labels), generator=g)[:300]
    return dataclasses.replace(
        ds,
        train_images=ds.train_images[tr],
        train_labels=ds.train_labels[tr],
        test_images=ds.test_images[te],
        test_labels=ds.test_labels[te],
        sha256="0" * 63 + "1",
    )


def test_study_two_configs_report_and_restart(small, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))
    clf = train_classifier(small, epochs=1)
    out = tmp_path / "study"
    # A study killed in the middle of `fast-lr`'s first epoch: the rerun must resume it.
    cfg = get_config("fast-lr").override(
        ["train.epochs=2", "train.seed=0", 'train.binarize="none"', "train.threads=1", 'train.dataset="auto"', 'train.data_path=""']
    )
    with pytest.raises(Interrupted):
        train(cfg, out / "runs" / "fast-lr", progress=False, figures=False, dataset=small, stop_after_steps=3)
    kwargs = dict(
        threads=1, epochs=2, settings=EvalConfig(k=4, n_samples=200, chunk=600, precision="bf16"), out=out, dataset=small, classifier=clf
    )
    with captured_log() as logs:
        result = run_study(["baseline", "fast-lr"], **kwargs)
    assert any("[fast-lr] resuming" in m for m in logs)
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][:3]
    assert table[0].startswith("| configuration | parameters | train s | img/s | test −ELBO")
    assert [row.split("|")[1].strip() for row in table[1:]] == ["baseline", "fast-lr"]
    assert len(table[1].split("|")) == len(table[0].split("|"))
    assert "Does dropout hurt?** not measured" in md and "Does lr 0.001 converge faster?** " in md
    assert "runs/baseline/samples.png" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 8  # 4 figures x 2 configurations, embedded
    ev = json.loads((out / "runs" / "baseline" / "eval.json").read_text())
    assert ev["binarized"] is False and ev["iwae"]["k"] == 4 and ev["samples"]["n"] == 200
    assert result["rows"][0]["nll"] == pytest.approx(ev["iwae"]["nll"])
    # Restarted: both runs are done, so nothing is retrained or re-evaluated.
    with captured_log() as logs:
        run_study(["baseline", "fast-lr"], **kwargs)
    assert sum("skipped" in m for m in logs) == 2


def _row(name, **kw):
    base = dict(
        config=name,
        elbo=100.0,
        recon=90.0,
        kl=10.0,
        recon_mu=88.0,
        nll=95.0,
        nll_stderr=0.5,
        probe_accuracy=0.9,
        coverage=10,
        histogram=[100] * 10,
        entropy=1.0,
        blank_rate=0.01,
        images_per_second=1000.0,
        test_loss_history=[150.0, 120.0, 110.0, 100.0],
    )
    base.update(kw)
    return base


def test_findings_cite_numbers_and_say_not_measured():
    rows = [_row("baseline"), _row("dropout", elbo=104.5, nll=99.0), _row("fast-lr", test_loss_history=[130.0, 105.0, 101.0, 99.0])]
    answers = dict(findings(rows))
    assert answers["Does dropout hurt?"].startswith("Yes") and "104.50" in answers["Does dropout hurt?"]
    assert answers["Does lr 0.001 converge faster?"].startswith("Yes")
    assert "needs 3 epoch(s)" in answers["Does lr 0.001 converge faster?"]
    assert answers["Does the deeper decoder sharpen reconstructions?"].startswith("not measured")
    assert (
        "optimized" in answers["Does `optimized` cover all ten digits?"]
        and "not measured" in answers["Does `optimized` cover all ten digits?"]
    )


def test_findings_optimized_coverage_and_encoder():
    hist = [0] + [1000 // 9] * 9
    rows = [_row("optimized", coverage=9, histogram=hist, nll=90.0), _row("dense-encoder", nll=92.0, probe_accuracy=0.95)]
    answers = dict(findings(rows))
    assert answers["Does `optimized` cover all ten digits?"].startswith("No: 9 of 10")
    assert answers["Does the LSTM encoder beat the dense encoder?"].startswith("Mixed")


def test_cli_parses_the_new_commands():
    p = build_parser()
    a = p.parse_args(["study", "--configs", "baseline,dropout", "--jobs", "2", "--epochs", "3", "--dataset", "embedded"])
    assert (a.configs, a.jobs, a.epochs, a.k, a.out) == ("baseline,dropout", 2, 3, 1000, "study")
    a = p.parse_args(["evaluate", "runs/x", "--k", "5000"])
    assert a.k == 5000 and a.precision == "fp32"
    assert p.parse_args(["classifier", "train"]).action == "train"


def test_cached_classifier_is_reused(small, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path))
    tiny = dataclasses.replace(small, train_images=small.train_images[:200], train_labels=small.train_labels[:200])
    monkeypatch.setattr("mnist_vae.evaluation.classifier.train_classifier", lambda ds: train_classifier(ds, epochs=1))
    first = get_classifier(tiny)
    assert (tmp_path / "classifiers" / f"{tiny.sha256[:16]}.safetensors").exists()
    monkeypatch.setattr("mnist_vae.evaluation.classifier.train_classifier", lambda *a, **k: pytest.fail("retrained"))
    again = get_classifier(tiny)
    assert again.test_accuracy == first.test_accuracy
    x = small.test_images[:5].float() / 255
    assert torch.allclose(first.predict(x)[0], again.predict(x)[0])
