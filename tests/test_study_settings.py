"""A variant's own fields win over the study's defaults; a contradiction with an explicit flag is refused."""

import dataclasses
import json

import pytest
import torch

from mnist_vae.config import EvalConfig, load_toml
from mnist_vae.data import load_embedded
from mnist_vae.errors import ConfigError
from mnist_vae.runtime.device import resolve_precision
from mnist_vae.study.runner import run_study
from mnist_vae.study.settings import StudySettings, study_config, variant_fields

# (config field, StudySettings field, the study's default, a variant's value, a flag value that contradicts it)
FIELDS = [
    ("precision", "train_precision", "auto", "fp32", "bf16"),
    ("epochs", "epochs", 50, 7, 3),
    ("binarize", "binarize", "none", "dynamic", "static"),
    ("device", "device", "cpu", "auto", "cpu"),
]


@pytest.mark.parametrize("field, setting, default, mine, flag", FIELDS)
def test_a_variant_field_wins_over_the_study_default(field, setting, default, mine, flag):
    spec = f"fast-lr[{field}={mine}]"
    assert variant_fields(spec) == {field}
    s = StudySettings()
    assert getattr(study_config(spec, s, 1, None).train, field) == mine
    assert getattr(study_config("fast-lr", s, 1, None).train, field) == default


@pytest.mark.parametrize("field, setting, default, mine, flag", FIELDS)
def test_an_explicit_flag_sets_the_others_and_a_contradicting_variant_is_refused(field, setting, default, mine, flag):
    s = StudySettings(**{setting: flag})
    assert getattr(study_config("fast-lr", s, 1, None).train, field) == flag
    with pytest.raises(ConfigError) as err:
        study_config(f"fast-lr[{field}={mine}]", s, 1, None)
    msg = str(err.value)
    assert f"fast-lr[{field}={mine}] sets {field}" in msg and "--" in msg and "\n" not in msg
    # the same value in both places is no contradiction
    assert getattr(study_config(f"fast-lr[{field}={flag}]", s, 1, None).train, field) == flag


def test_a_variant_cannot_change_the_studys_dataset():
    with pytest.raises(ConfigError, match="one dataset"):
        study_config("fast-lr[dataset=mnist]", StudySettings(), 1, ("embedded", ""))


def test_the_runs_record_what_they_resolved_to(tmp_path, monkeypatch):
    """`fast-lr[epochs=1]` next to `fast-lr[precision=fp32,epochs=2]`: each run trains with its own settings, and the report says so."""
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))
    ds = load_embedded()
    g = torch.Generator().manual_seed(0)
    tr, te = torch.randperm(len(ds.train_labels), generator=g)[:300], torch.randperm(len(ds.test_labels), generator=g)[:100]
    small = dataclasses.replace(
        ds, train_images=ds.train_images[tr], train_labels=ds.train_labels[tr], test_images=ds.test_images[te],
        test_labels=ds.test_labels[te], sha256="0" * 63 + "2",
    )  # fmt: skip
    variant = "fast-lr[precision=fp32,epochs=2]"
    base = "fast-lr[epochs=1]"
    s = StudySettings(configs=(base, variant), seeds=1, threads=1, eval=EvalConfig(k=2), out=tmp_path / "s", screen=True)
    result = run_study(s, dataset=small)
    rows = {r["config"]: r for r in result["rows"]}
    auto = resolve_precision("auto", torch.device("cpu"))
    assert rows[base]["resolved"]["precision"] == auto and rows[base]["epochs"] == 1
    assert rows[variant]["resolved"] == {**rows[variant]["resolved"], "precision": "fp32", "epochs": 2}
    run_cfg = load_toml(tmp_path / "s" / "runs" / "fast-lr+precision=fp32+epochs=2" / "seed0" / "config.toml")
    assert (run_cfg.train.precision, run_cfg.train.epochs) == ("fp32", 2)
    assert len((tmp_path / "s" / "runs" / "fast-lr+precision=fp32+epochs=2" / "seed0" / "metrics.jsonl").read_text().splitlines()) == 2
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert {r["config"]: r["resolved"]["precision"] for r in study["rows"]} == {base: auto, variant: "fp32"}
    assert "fp32, 2 epochs" in (tmp_path / "s" / "report.md").read_text()
