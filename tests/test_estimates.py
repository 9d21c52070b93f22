"""Study estimates that learn: finished runs' seconds per configuration and number of jobs, the rounds'
measured wall beside their estimate in rounds.json, and a budget checked at the upper end of what was seen."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mnist_vae.config import EvalConfig
from mnist_vae.errors import ConfigError
from mnist_vae.study import cost, runner, settle
from mnist_vae.study.cost import RunCost
from mnist_vae.study.settings import StudySettings

from helpers import captured_log, small_dataset

#: Known run times of the fake executor (seconds per run: the rows say this much; the wall adds OVERHEAD).
SECONDS = {"mlp-vae": 100.0, "baseline": 300.0}
OVERHEAD = 6.0  # per run, not in its row: starting a worker, the per-epoch test ELBO


def _seconds(config: str, seed: int) -> float:
    return SECONDS[config] * (1.0 + 0.08 * (seed % 3 - 1))  # seeds differ by up to 8%


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeExecutor:
    """Runs nothing: each job takes its known seconds on the first free of ``workers`` workers, by the clock."""

    in_process = False

    def __init__(self, clock: FakeClock, workers: int) -> None:
        self.clock, self.workers, self.longest = clock, workers, 0.0

    def run(self, fn, jobs, wait=False, **kwargs):
        free, done = [self.clock.now] * self.workers, []
        for job in jobs:  # in submission order, like the process pool
            i = min(range(self.workers), key=free.__getitem__)
            t = _seconds(job.config, job.seed)
            free[i] += t + OVERHEAD
            self.longest = max(self.longest, t + OVERHEAD)
            done.append((free[i], job.config, job.seed, job, t))
        for end, _, _, job, t in sorted(done):
            self.clock.now = end
            yield job, {"config": job.config, "seed": job.seed, "train_seconds": 0.8 * t, "nll_seconds": 0.15 * t, "eval_seconds": 0.2 * t}


def _fake_rounds(claims, have, max_seeds, *args, **kwargs):
    """Claims never settle: every round adds the next seed to each configuration, up to max_seeds."""
    nxt = {n: [len(s)] for n, s in have.items() if len(s) < max_seeds}
    return (nxt, "claims open") if nxt else ({}, "--max-seeds reached")


def _study(tmp_path, monkeypatch, budget_s: float, max_seeds: int = 12):
    """A 2-job --until-settled study on the fake executor and clock; (seconds it took, longest run, rounds.json, log)."""
    clock = FakeClock()
    monkeypatch.setattr(runner, "time", SimpleNamespace(perf_counter=clock, time=lambda: 1e9 + clock()))
    monkeypatch.setattr(runner, "evaluate_claims", lambda rows, sequential: [])
    monkeypatch.setattr(settle, "next_round", _fake_rounds)
    s = StudySettings(configs=("mlp-vae", "baseline"), seeds=2, epochs=1, jobs=2, out=tmp_path / f"study{budget_s:.0f}",
                      until_settled=True, max_seeds=max_seeds, budget_s=budget_s, eval=EvalConfig(k=2, n_samples=10))  # fmt: skip
    plan = runner._plan(s, None, None)
    plan.out.mkdir()
    # What a few timed steps said: half the truth, as a process timed alone misjudges runs side by side.
    costs = [RunCost(n, SECONDS[n] / 2, 0.0, 0.0) for n in plan.names for _ in plan.seeds]
    rounds = runner._rounds(plan, s)
    ex = FakeExecutor(clock, plan.workers)
    with captured_log() as logs:
        rows = runner._execute([j for r in rounds for j in runner.plan_jobs(plan, s, r)], ex, None, None)
        runner._settle(plan, s, rounds, rows, ex, None, None, costs, 0.0)
    data = json.loads((plan.out / "rounds.json").read_text())
    return clock.now, ex.longest, data, logs


@pytest.mark.parametrize("budget_min", [9, 17, 23, 31, 40, 55, 80])
def test_a_budget_is_never_overrun_by_more_than_one_run(tmp_path, monkeypatch, budget_min):
    took, longest, data, logs = _study(tmp_path, monkeypatch, budget_min * 60.0)
    assert took <= budget_min * 60 + longest
    assert any("until-settled: stopping" in m for m in logs)
    if budget_min < 70:  # the budget, not --max-seeds, ended it
        assert any("stopping before the next round" in m and "overrun the budget" in m for m in logs)


def test_rounds_learn_from_finished_runs_and_keep_estimate_beside_measured(tmp_path, monkeypatch):
    took, _, data, logs = _study(tmp_path, monkeypatch, 10_000.0, max_seeds=7)
    timing = data["timing"]
    assert [t["round"] for t in timing] == list(range(1, len(data["rounds"]) + 1)) and len(timing) == 6
    assert all(t["jobs"] == 2 for t in timing)
    first = timing[0]
    assert first["source"] == "estimated from a few timed steps" and first["measured_s"] is None  # no run folders here
    for t in timing[1:]:
        assert t["source"] == "from finished runs of this study"
        assert t["upper_s"] >= t["estimate_s"] and t["measured_s"] > 0
    # Round 2 knows the runs' seconds but not yet what a round adds to them; from round 3 on it knows both,
    # and misses only by the seeds' own spread (8%); the upper end covers every round it knew.
    assert all(abs(t["measured_s"] - t["estimate_s"]) <= 0.15 * t["measured_s"] for t in timing[1:])
    assert all(abs(t["measured_s"] - t["estimate_s"]) <= 0.10 * t["measured_s"] for t in timing[2:])
    assert all(t["measured_s"] <= t["upper_s"] * 1.001 for t in timing[2:])
    shown = [m for m in logs if "until-settled: round" in m and " took " in m]
    assert len(shown) == 6 and all("estimated about" in m and "up to" in m for m in shown)
    assert data["rounds"][1] == {"baseline": [2], "mlp-vae": [2]} or data["rounds"][1] == {"mlp-vae": [2], "baseline": [2]}


def test_the_budget_check_uses_the_longest_run_seen_not_the_mean():
    seen = cost.Observed(runs={("a", 2): [(80.0, 10.0, 10.0), (110.0, 10.0, 10.0)]}, overhead=[1.02, 1.10])
    learned = cost.learn([RunCost("a", 50.0, 5.0, 15.0), RunCost("b", 40.0, 0.0, 0.0)], seen, workers=2)
    assert learned[0].total_s == pytest.approx(115.0) and learned[0].upper == pytest.approx(130.0) and learned[0].runs == 2
    assert learned[1] == RunCost("b", 40.0, 0.0, 0.0)  # no finished run of b: the timed steps
    assert cost.learn(learned[:1], seen, workers=1)[0].total_s == pytest.approx(115.0)  # kept: another number of jobs learns nothing
    est, upper = cost.round_estimate(learned[:1] * 2, seen, workers=2)
    assert est == pytest.approx(115.0 * 1.06) and upper == pytest.approx(130.0 * 1.10)
    assert cost.source(learned) == "from finished runs of this study; the others estimated from a few timed steps"


def test_a_configuration_with_finished_runs_is_not_timed_again(monkeypatch):
    from mnist_vae.config import RunConfig

    timed: list[str] = []
    monkeypatch.setattr(cost, "training_rate", lambda cfg, *a, **k: timed.append(cfg.name) or 1000.0)
    monkeypatch.setattr(cost, "decoder_rate", lambda *a, **k: 1e6)
    configs = {"a": RunConfig().replace(epochs=1), "b": RunConfig().replace(epochs=1)}
    seen = cost.Observed(runs={("a", 2): [(80.0, 10.0, 10.0), (110.0, 10.0, 10.0)]})
    costs = cost.estimate(configs, 2, EvalConfig(k=5), 1000, 100, seen=seen, workers=2)
    assert len(timed) == 1  # only b, which has no finished run at 2 jobs
    assert [c.config for c in costs] == ["a", "a", "b", "b"] and costs[0] == cost.learn([RunCost("a", 1.0, 1.0, 1.0)], seen, 2)[0]
    assert costs[2].runs == 0 and costs[2].train_s == pytest.approx(1.0)  # b: 1 epoch of 1000 images at 1000 img/s
    assert len(cost.estimate(configs, 1, EvalConfig(k=5), 1000, 100, seen=seen, workers=1)) == 2 and len(timed) == 3


def test_a_small_study_is_timed_for_a_part_of_its_own_cost_only(monkeypatch):
    from mnist_vae.config import RunConfig

    ticks = iter(range(10**6))
    monkeypatch.setattr(cost, "time", SimpleNamespace(perf_counter=lambda: next(ticks) / 16))  # every step takes 1/16 s
    cfg = RunConfig().replace(batch_size=10)
    # 1,000 images at 160 img/s take 6.25 s: 5% of it is 0.31 s, which the fewest steps (8 x 1/16 s) pass.
    assert cost.training_rate(cfg, images=1_000) == 160.0 and next(ticks) == 2 * (3 + cost.MIN_STEPS)
    ticks = iter(range(10**6))
    assert cost.training_rate(cfg) == 160.0 and next(ticks) == 2 * (3 + 32)  # 2 s of 1/16 s steps
    ticks = iter(range(10**6))
    cost.training_rate(cfg, images=10_000)  # 5% of 62.5 s is more than 2 s: the full 2 s
    assert next(ticks) == 2 * (3 + 32)


def test_observe_files_each_run_under_the_jobs_of_its_round_and_times_the_rounds():
    rows = [{"config": "a", "seed": k, "train_seconds": 90.0, "nll_seconds": 5.0, "eval_seconds": 10.0} for k in range(4)]
    rows.append({"config": "a", "seed": 9, "train_seconds": float("nan"), "nll_seconds": 1.0, "eval_seconds": 1.0})
    rounds = [{"a": [0, 1]}, {"a": [2, 3]}]
    timing = [{"round": 1, "jobs": 1, "measured_s": None}, {"round": 2, "jobs": 2, "measured_s": 110.0}]
    seen = cost.observe(rows, rounds, timing, workers=2)
    assert len(seen.runs[("a", 1)]) == 2 and len(seen.runs[("a", 2)]) == 2  # seed 9 has no usable seconds
    assert seen.overhead == [pytest.approx(110.0 / 100.0)]


def test_the_classifier_s_first_training_is_paid_once_before_the_runs():
    costs = [RunCost("a", 60.0, 0.0, 0.0)] * 4 + [RunCost(cost.CLASSIFIER, 190.0, 0.0, 0.0, first=True)]
    assert cost.wall_estimate(costs, 2) == pytest.approx(190.0 + 120.0)
    lines = cost.describe(costs, 2)
    assert any("digit classifier" in line and "3.2 min" in line for line in lines)
    assert cost.as_dict(costs, 2)["classifier_s"] == 190.0 and len(cost.as_dict(costs, 2)["runs"]) == 4


def test_estimate_counts_the_classifier_when_it_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_VAE_DATA", str(tmp_path / "cache"))  # nothing cached
    ds = small_dataset(200, 50)
    s = StudySettings(configs=("mlp-vae",), seeds=2, epochs=1, threads=1, out=tmp_path / "study", eval=EvalConfig(k=2, n_samples=10))
    with captured_log() as logs:
        est = runner.run_study(s, dataset=ds, estimate_only=True)["estimate"]
    assert est["classifier_s"] > 0 and est["wall_s"] > est["classifier_s"]
    assert any("digit classifier" in m and "not cached" in m for m in logs)
    with captured_log() as logs:
        screen = runner.run_study(s.replace(screen=True), dataset=ds, estimate_only=True)["estimate"]
    assert screen["classifier_s"] == 0 and not any("digit classifier" in m for m in logs)  # a screen judges no samples


def test_rounds_json_of_today_opens_and_keeps_its_rounds(tmp_path):
    (tmp_path / "rounds.json").write_text(json.dumps({"rounds": [{"a": [0, 1]}, {"a": [2]}]}))  # written before rounds were timed
    assert settle.load_rounds(tmp_path) == [{"a": [0, 1]}, {"a": [2]}] and settle.load_timing(tmp_path) == []
    timing = [{"round": 1, "jobs": 2, "estimate_s": 60.0, "upper_s": 70.0, "measured_s": 66.0, "source": "x"}]
    settle.save_rounds(tmp_path, [{"a": [0, 1]}, {"a": [2]}], timing)
    settle.save_rounds(tmp_path, [{"a": [0, 1]}, {"a": [2]}, {"a": [3]}])  # no timing given: the file's is kept
    assert settle.load_timing(tmp_path) == timing and settle.load_rounds(tmp_path)[2] == {"a": [3]}
    data = json.loads((tmp_path / "rounds.json").read_text())
    assert data["rounds"][2] == {"a": [3]}  # readers of the rounds alone still find them where they were
    (tmp_path / "rounds.json").write_text(json.dumps({"rounds": [], "timing": [{"round": "first"}]}))
    with pytest.raises(ConfigError, match="rounds.json: its 'timing' is unreadable"):
        settle.load_timing(tmp_path)
