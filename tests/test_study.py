"""Studies on a slice of the embedded digits: seeds, intervals, claims, restart; the CLI's study options."""

import dataclasses
import json

import pytest
import torch

from mnist_vae.cli import build_parser
from mnist_vae.config import EvalConfig
from mnist_vae.data import load_embedded
from mnist_vae.errors import ConfigError
from mnist_vae.evaluation.classifier import get_classifier, train_classifier
from mnist_vae.presets import get_config
from mnist_vae.study.runner import run_study
from mnist_vae.study.settings import StudySettings
from mnist_vae.training import Interrupted, train

from helpers import captured_log, write_npz


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


def test_study_two_configs_two_seeds_report_and_restart(small, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))
    clf = train_classifier(small, epochs=1)
    out = tmp_path / "study"
    # A study killed in the middle of `fast-lr` seed 1's first epoch: the rerun must resume it.
    cfg = get_config("fast-lr").replace(
        epochs=2, seed=1, binarize="none", threads=1, dataset="auto", data_path="", device="cpu", precision="auto"
    )
    with pytest.raises(Interrupted):
        train(cfg, out / "runs" / "fast-lr" / "seed1", progress=False, figures=False, dataset=small, stop_after_steps=3)
    settings = StudySettings(
        configs=("baseline", "fast-lr"),
        seeds=2,
        threads=1,
        epochs=2,
        eval=EvalConfig(k=4, n_samples=200, chunk=600, precision="bf16"),
        out=out,
    )
    with captured_log() as logs:
        result = run_study(settings, dataset=small, classifier=clf)
    assert any(m.startswith("[fast-lr seed 1] resuming") for m in logs)
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line][:3]
    assert table[0].startswith("| configuration | kind | seeds | parameters | train s | img/s | test −ELBO")
    assert [row.split("|")[1].strip() for row in table[1:]] == ["baseline", "fast-lr"]
    assert " ± " in table[1] and len(table[1].split("|")) == len(table[0].split("|"))  # mean ± 95% half-width
    assert "## Claims of the original write-up" in md and "## Beyond the write-up" in md
    assert "not measured: this study does not include deeper-decoder, dropout" in md  # one line for the claims it cannot measure
    assert md.index("measured claims settled") < md.index("Dataset:")  # the verdicts' count comes first
    assert "The protocol differs from the write-up's: 2 epochs, not 50" in md
    assert "runs/baseline/seed0/samples.png" in md and "![" in md and "curves.png" in md and "nll.png" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 + 1 + 8  # two summary figures, the claims forest, 4 figures x 2 configurations
    assert "claims_forest.png" in md and "## The claims in pictures" in md
    beyond = md[md.index("## Beyond the write-up") : md.index("## ", md.index("## Beyond the write-up") + 3)]
    assert "not measured: this study does not include" in beyond and "| configuration |" not in beyond  # no empty table
    ev = json.loads((out / "runs" / "baseline" / "seed1" / "eval.json").read_text())
    assert ev["binarized"] is False and ev["iwae"]["k"] == 4 and ev["samples"]["n"] == 200 and 0 <= ev["recon_accuracy"] <= 1
    study = json.loads((out / "study.json").read_text())
    assert [(r["config"], r["seed"]) for r in study["rows"]] == [("baseline", 0), ("baseline", 1), ("fast-lr", 0), ("fast-lr", 1)]
    nll = study["table"][0]["nll"]
    assert nll["n"] == 2 and nll["lo"] < nll["mean"] < nll["hi"] and nll["values"] == [r["nll"] for r in study["rows"][:2]]
    lr_claim = next(c for c in study["claims"] if c["claim"].startswith("learning-rate adjustments"))
    assert lr_claim["verdict"] == "not measured" and "at least 10 epochs" in lr_claim["why"]  # 2 epochs cannot tell
    recon = next(c for c in study["claims"] if c["claim"] == "reconstructions were clear")
    assert (
        set(recon["values"]) == {"0", "1"}
        and recon["procedure"].startswith("anytime-valid betting")  # a share: bounded
        and recon["holm"] in ("holds", "not at family-wise 5%", "—")
    )
    assert result["rows"][0]["nll"] == pytest.approx(
        json.loads((out / "runs" / "baseline" / "seed0" / "eval.json").read_text())["iwae"]["nll"]
    )
    # Restarted: every run is done, so nothing is retrained or re-evaluated.
    with captured_log() as logs:
        run_study(settings, dataset=small, classifier=clf)
    assert sum("skipped" in m for m in logs) == 4
    assert any("left to do: 4 of 4 run(s) already finished, 0 partly trained; about 0 min wall" in m for m in logs)
    # ...and other settings are refused with one line naming the difference.
    with pytest.raises(ConfigError, match=r"made with epochs = 2, not 3"):
        run_study(settings.replace(epochs=3), dataset=small, classifier=clf)


def test_one_seed_study_says_inconclusive_one_seed(small, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))
    clf = train_classifier(small, epochs=1)
    settings = StudySettings(
        configs=("baseline", "dropout"), seeds=1, threads=1, epochs=1, out=tmp_path / "s", eval=EvalConfig(k=2, n_samples=50, chunk=600)
    )
    result = run_study(settings, dataset=small, classifier=clf)
    measured = [c for c in result["claims"] if c["verdict"] != "not measured"]
    assert measured and all(c["verdict"] == "inconclusive: one seed" for c in measured)


def test_flags_left_out_give_the_settings_own_defaults():
    """The study's and evaluate's options describe exactly the settings given, and the dataclasses' defaults for the rest."""
    from mnist_vae.cli.evaluate import eval_settings
    from mnist_vae.cli.study import study_settings

    p = build_parser()
    a = p.parse_args(["study", "--configs", "baseline,dropout[lr=0.002,seed=1]", "--jobs", "2", "--epochs", "3", "--dataset", "embedded"])
    assert study_settings(a) == StudySettings(configs=("baseline", "dropout[lr=0.002,seed=1]"), jobs=2, epochs=3, dataset="embedded")
    assert study_settings(p.parse_args(["study"])) == StudySettings()
    assert eval_settings(p.parse_args(["evaluate", "runs/x", "--k", "5000"])) == EvalConfig(k=5000)
    assert eval_settings(p.parse_args(["evaluate", "runs/x"])) == EvalConfig()


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


def test_cost_model_schedules_longest_first_and_the_estimate_writes_nothing(small, tmp_path, capsys):
    from mnist_vae.cli import main
    from mnist_vae.study.cost import RunCost, left_to_do, wall_estimate

    costs = [RunCost("a", 100, 50, 0), RunCost("b", 60, 0, 0), RunCost("c", 40, 0, 0), RunCost("d", 30, 0, 0)]
    assert wall_estimate(costs, 1) == 280 and wall_estimate(costs, 2) == 150  # a alone; b + c + d on the other worker
    assert left_to_do(costs, [(1, 1)] * 4, 1) is None  # nothing done yet: the estimate above says it all
    # a finished, b half trained, c trained but not evaluated, d untouched: 30 + 60 + 30 = 120 s on one worker
    line = left_to_do([RunCost("a", 100, 50, 0), RunCost("b", 60, 0, 0), RunCost("c", 40, 60, 0), RunCost("d", 30, 0, 0)],
                      [(0, 0), (0.5, 1), (0, 1), (1, 1)], 1)  # fmt: skip
    assert line == "  left to do: 1 of 4 run(s) already finished, 2 partly trained; about 2 min wall with 1 job(s)"
    npz = write_npz(tmp_path / "d.npz", small)
    out = tmp_path / "study"
    args = ["study", "--configs", "baseline,mlp-vae", "--seeds", "2", "--epochs", "3", "--k", "10", "--data-path", str(npz)]
    assert main([*args, "--threads", "1", "--out", str(out), "--estimate"]) == 0
    err = capsys.readouterr().err
    assert "mlp-vae: 2 run(s) x (training" in err and "about" in err and "min wall with 1 job(s)" in err
    assert not out.exists()  # an estimate trains and writes nothing
