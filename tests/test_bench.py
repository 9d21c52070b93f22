"""The benchmark's statistics, and one small end-to-end run of it."""

import json

import pytest
import torch

from mnist_vae.bench import main, summarize_precision
from mnist_vae.models import VAE, count_parameters
from mnist_vae.models.flops import forward_flops
from mnist_vae.presets import get_config
from mnist_vae.runtime.device import native_bf16


def test_paired_shift_within_the_bound_despite_a_large_seed_spread():
    fp32 = [142.9, 139.0, 138.8]  # seed-to-seed sd ~2.3 nats
    s = summarize_precision({"fp32": fp32, "bf16": [x - 0.2 + e for x, e in zip(fp32, (0.03, -0.02, 0.0))]})
    assert s["bf16"]["shift_vs_fp32"] == pytest.approx(-0.197, abs=1e-3)
    assert s["bf16"]["verdict"] == "within"
    assert -0.5 < s["bf16"]["ci95"][0] < s["bf16"]["ci95"][1] < 0.5
    assert s["fp32"]["verdict"] == "reference" and s["fp32"]["sd"] > 2


def test_paired_shift_that_exceeds_or_cannot_be_told():
    fp32 = [140.0, 139.0, 141.0]
    assert summarize_precision({"fp32": fp32, "x": [x + 1.5 + e for x, e in zip(fp32, (0.1, -0.1, 0.0))]})["x"]["verdict"] == "exceeds"
    assert summarize_precision({"fp32": fp32, "x": [x + e for x, e in zip(fp32, (1.0, -1.2, 0.3))]})["x"]["verdict"] == "inconclusive"


@pytest.mark.slow
def test_bench_writes_its_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--configs",
                "baseline",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--nll-k",
                "8",
                "--nll-images",
                "2",
                "--options",
                "",
                "--precision-epochs",
                "0",
                "--no-full-train",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    row = result["configs"][0]
    model = VAE(get_config("baseline").model)
    assert row["config"] == "baseline" and row["parameters"] == count_parameters(model)
    assert row["forward_mflop"] == pytest.approx(forward_flops(model)["total"] / 1e6)
    for key in ("reference_img_s", "train_img_s", "eval_img_s", "nll_passes_s_fp32", "peak_rss_mb"):
        assert 0 < row[key] < float("inf"), key
    # The overhead is the two measured rates' ratio, and the table prints the measured rates.
    assert row["overhead"] == pytest.approx(row["reference_img_s"] / row["train_img_s"] - 1)
    printed = capsys.readouterr().out
    assert (
        f"| baseline | {row['parameters']:,} | {row['train_mflop']:.1f} | {row['reference_img_s']:,.0f} | {row['train_img_s']:,.0f} "
        in printed
    )
    # bf16 NLL is measured only where the CPU computes bf16 natively (emulated, `auto` never picks it)
    assert (row["nll_passes_s_bf16"] or 0) > 0 if native_bf16(torch.device("cpu")) else row["nll_passes_s_bf16"] is None
    assert result["machine"]["matmul_gflop_s"] > 0
