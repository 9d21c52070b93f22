"""`study --until-settled`: rounds of seeds where claims are open, the budget, resuming, and one process per run."""

import dataclasses
import fcntl
import json

import pytest
import torch

from mnist_vae.config import EvalConfig
from mnist_vae.data import load_embedded
from mnist_vae.errors import ConfigError
from mnist_vae.evaluation.classifier import train_classifier
from mnist_vae.study import settle
from mnist_vae.study.jobs import run_job
from mnist_vae.study.runner import plan_jobs, run_study
from mnist_vae.study.settings import StudySettings

from helpers import captured_log


@pytest.fixture(scope="module")
def tiny():
    ds = load_embedded()
    g = torch.Generator().manual_seed(0)
    tr, te = torch.randperm(len(ds.train_labels), generator=g)[:300], torch.randperm(len(ds.test_labels), generator=g)[:100]
    return dataclasses.replace(
        ds, train_images=ds.train_images[tr], train_labels=ds.train_labels[tr], test_images=ds.test_images[te],
        test_labels=ds.test_labels[te], sha256="0" * 63 + "3",
    )  # fmt: skip


def test_parse_duration():
    assert settle.parse_duration("90m") == 5400 and settle.parse_duration("1.5h") == 5400 and settle.parse_duration("45s") == 45
    assert settle.parse_duration("20") == 1200  # bare numbers are minutes
    with pytest.raises(ConfigError, match="--budget: 'soon'"):
        settle.parse_duration("soon")


def test_next_round_adds_seeds_only_where_claims_are_open_family_wise():
    claims = [
        {"verdict": "supported", "configs": ["a"], "holm": "holds"},
        {"verdict": "inconclusive", "configs": ["b", "c"], "holm": "—"},
        {"verdict": "not measured", "configs": ["d"]},
    ]
    have = {"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1, 2], "d": [0, 1, 2]}
    nxt, why = settle.next_round(claims, have, max_seeds=5, workers=2)
    assert nxt == {"b": [3], "c": [3]} and "adding seeds to b, c" in why
    nxt, _ = settle.next_round(claims, have, max_seeds=5, workers=4)
    assert nxt == {"b": [3, 4], "c": [3, 4]}  # enough runs to keep four workers busy, capped at max_seeds
    nxt, why = settle.next_round(claims, {**have, "b": [0, 1, 2, 3, 4], "c": [0, 1, 2, 3, 4]}, max_seeds=5, workers=2)
    assert nxt == {} and "--max-seeds" in why
    nxt, why = settle.next_round(claims[:1], have, max_seeds=5, workers=2)
    assert nxt == {} and "settled family-wise" in why
    # settled per claim but not family-wise: still open, it needs more seeds to hold under Holm
    nxt, _ = settle.next_round([{"verdict": "supported", "configs": ["a"], "holm": "not at family-wise 5%"}], have, 5, 1)
    assert nxt == {"a": [3]}


def test_next_round_stops_feeding_hopeless_claims_and_feeds_the_cheapest_first():
    have = {n: [0, 1, 2] for n in "abcde"}
    hopeless = {"verdict": "inconclusive", "configs": ["a"], "holm": "—", "seeds_for_power": 400}
    cheap = {"verdict": "inconclusive", "configs": ["b", "c"], "holm": "—", "seeds_for_power": 8}
    dear = {"verdict": "inconclusive", "configs": ["d", "e"], "holm": "—", "seeds_for_power": 8}
    minutes = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 5.0, "e": 5.0}
    nxt, why = settle.next_round([hopeless, dear, cheap], have, max_seeds=20, workers=2, minutes=minutes)
    assert nxt == {"b": [3], "c": [3]} and "1 would need more than --max-seeds 20" in why
    nxt, why = settle.next_round([hopeless], have, max_seeds=20, workers=2)
    assert nxt == {} and "draw no more seeds" in why
    # a pair whose seeds lag on one side feeds only the lagging configuration
    nxt, _ = settle.next_round([cheap], {**have, "b": [0, 1, 2, 3]}, max_seeds=20, workers=1)
    assert nxt == {"c": [3]}


def test_until_settled_adds_rounds_records_them_resumes_and_respects_the_budget(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))
    clf = train_classifier(tiny, epochs=1)
    out = tmp_path / "study"
    s = StudySettings(configs=("baseline", "dropout"), seeds=2, epochs=1, threads=1, eval=EvalConfig(k=2, n_samples=50, chunk=600),
                      out=out, until_settled=True, max_seeds=3)  # fmt: skip
    with captured_log() as logs:
        result = run_study(s, dataset=tiny, classifier=clf)
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert rounds[0] == {"baseline": [0, 1], "dropout": [0, 1]} and len(rounds) >= 2
    assert settle.seeds_so_far(rounds) == {"baseline": [0, 1, 2], "dropout": [0, 1, 2]}  # fed one job at a time, up to 3
    assert any("until-settled: stopping" in m and "--max-seeds" in m for m in logs)
    assert {(r["config"], r["seed"]) for r in result["rows"]} == {(c, k) for c in ("baseline", "dropout") for k in range(3)}
    measured = [c for c in result["claims"] if c["verdict"] != "not measured"]
    assert measured and all(c["procedure"].startswith("anytime-valid") for c in measured)
    assert result["meta"]["sequential"] and result["meta"]["rounds"] == rounds
    timing = settle.load_timing(out)  # each round's estimate beside its measured wall time
    assert [t["round"] for t in timing] == list(range(1, len(rounds) + 1))
    assert all(t["measured_s"] > 0 and t["estimate_s"] > 0 for t in timing)
    assert any(m.startswith("until-settled: round 2 took ") and "estimated about" in m for m in logs)
    assert "anytime-valid" in (out / "report.md").read_text()
    assert "claims_narrowing.png" in (out / "report.md").read_text() and (out / "claims_narrowing.png").stat().st_size > 0
    # Started again with a larger --max-seeds: the recorded rounds are reused (nothing retrained), then one more.
    with captured_log() as logs:
        run_study(s.replace(max_seeds=4), dataset=tiny, classifier=clf)
    again = json.loads((out / "rounds.json").read_text())["rounds"]
    assert sum("skipped" in m for m in logs) == 6 and again[: len(rounds)] == rounds and len(again) > len(rounds)
    assert all(seeds == [3] for r in again[len(rounds) :] for seeds in r.values())
    # A budget already spent: the study says so before the round that would overrun it, and trains nothing.
    with captured_log() as logs:
        run_study(s.replace(max_seeds=6, budget_s=0.001), dataset=tiny, classifier=clf)
    assert any("stopping before the next round" in m and "overrun the budget" in m for m in logs)
    assert json.loads((out / "rounds.json").read_text())["rounds"] == again
    # A fixed-seed report of a sequential study would be invalid: refused.
    with pytest.raises(ConfigError, match="--until-settled"):
        run_study(s.replace(until_settled=False, max_seeds=20), dataset=tiny, classifier=clf, report_only=True)


def test_a_run_another_process_holds_is_left_to_it(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))
    s = StudySettings(configs=("mlp-vae",), seeds=1, epochs=1, threads=1, eval=EvalConfig(k=2), out=tmp_path / "s", screen=True)
    from mnist_vae.study.runner import _plan

    job = plan_jobs(_plan(s, None, None), s)[0]
    lock = tmp_path / "s" / "runs" / "mlp-vae" / "seed0.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+b") as other:  # another study's process working on this run
        fcntl.flock(other, fcntl.LOCK_EX)
        assert run_job(job, dataset=tiny) == {"busy": True, "config": "mlp-vae", "seed": 0}
        assert not (tmp_path / "s" / "runs" / "mlp-vae" / "seed0").exists()  # nothing trained twice
    row = run_job(job, dataset=tiny, wait=True)  # the other process is gone: this one trains it
    assert row["config"] == "mlp-vae" and row["epochs"] == 1
