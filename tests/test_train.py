import json

import pytest
import torch

from mnist_vae.cli import main
from mnist_vae.errors import ConfigError, RunExistsError
from mnist_vae.runs.checkpoint import latest_checkpoint, list_checkpoints
from mnist_vae.training import Interrupted, train

from helpers import tiny_config, write_npz

FIGURES = ["reconstructions.png", "loss_curves.png", "samples.png", "samples_over_training.png", "interpolation.png"]


def tiny(name="dropout", epochs=2, **train):
    return tiny_config(epochs, name, **train)


def final_weights(run_dir):
    return latest_checkpoint(run_dir).weights


def test_training_lowers_the_loss_and_writes_metrics(tmp_path, small_data):
    m = train(tiny("optimized", epochs=3), tmp_path / "run", dataset=small_data, progress=False, figures=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert lines[-1]["test_loss"] < lines[0]["test_loss"] and lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert m["test_loss"] == lines[-1]["test_loss"]
    for r in lines:
        assert abs(r["train_loss"] - r["train_recon"] - r["train_kl"]) < 1e-6 * r["train_loss"]
        assert r["images_per_second"] > 0
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["dataset"]["n_train"] == 400 and meta["dataset"]["sha256"] == small_data.sha256
    assert len(list_checkpoints(tmp_path / "run")) == 2  # the newest two are kept


def test_same_seed_same_numbers(tmp_path, small_data):
    kw = dict(dataset=small_data, progress=False, figures=False)
    a = train(tiny(epochs=1), tmp_path / "a", **kw)
    b = train(tiny(epochs=1), tmp_path / "b", **kw)
    assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]


@pytest.mark.parametrize("stop_after, binarize", [(3, "none"), (4, "dynamic"), (6, "none")])
def test_resumed_run_ends_with_the_same_weights(tmp_path, small_data, stop_after, binarize):
    # 400 images / batch 100 = 4 steps per epoch: stop mid-epoch (3), at an epoch end (4), in epoch 2 (6).
    kw = dict(dataset=small_data, progress=False, figures=False)
    cfg = tiny("dropout", epochs=3, binarize=binarize)
    train(cfg, tmp_path / "straight", **kw)
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "resumed", stop_after_steps=stop_after, **kw)
    train(cfg, tmp_path / "resumed", resume=True, **kw)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    mb = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()

    def strip(lines):
        return [{k: v for k, v in json.loads(line).items() if k not in ("train_seconds", "images_per_second")} for line in lines]

    assert strip(ma) == strip(mb)


def test_existing_run_is_not_overwritten(tmp_path, small_data):
    kw = dict(dataset=small_data, progress=False, figures=False)
    train(tiny(epochs=1), tmp_path / "run", **kw)
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    with pytest.raises(RunExistsError):
        train(tiny(epochs=1), tmp_path / "run", **kw)
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before
    train(tiny(epochs=1, seed=3), tmp_path / "run", force=True, **kw)
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() != before


def test_a_mid_epoch_checkpoint_resumes_only_in_as_many_processes_as_wrote_it(tmp_path, small_data):
    from mnist_vae.runs.folder import resume_point

    kw = dict(dataset=small_data, progress=False, figures=False)
    cfg = tiny(epochs=2)
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "run", stop_after_steps=3, **kw)  # mid-epoch 1, written by one process
    assert resume_point(tmp_path / "run", cfg, 1).path.name == "E0000-S00003"
    with pytest.raises(ConfigError, match=r"E0000-S00003: saved mid-epoch by 1 process\(es\), this is 2; resume it with 1"):
        resume_point(tmp_path / "run", cfg, 2)  # checked at the entry, before the folder is touched
    train(cfg, tmp_path / "run", resume=True, **kw)
    assert resume_point(tmp_path / "run", cfg, 2).path.name == "E0002-S00000"  # an epoch's end: any process count


def test_resume_refuses_a_different_architecture(tmp_path, small_data):
    kw = dict(dataset=small_data, progress=False, figures=False)
    train(tiny(epochs=1), tmp_path / "run", **kw)
    with pytest.raises(ConfigError):
        train(tiny(epochs=2).override(["latent_dim=3"]), tmp_path / "run", resume=True, **kw)


def test_cli_run_writes_every_file_and_the_picture_commands_work(tmp_path, small_data, capsys):
    npz = tmp_path / "small.npz"
    write_npz(npz, small_data)
    run = tmp_path / "run"
    code = main(
        ["train", "--config", "optimized", "--epochs", "2", "--data-path", str(npz), "--out", str(run), "--no-progress", "--threads", "1"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "done: 2 epochs" in out and "test loss" in out
    for name in FIGURES + ["metrics.jsonl", "config.toml", "meta.json"]:
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert [p.name for p in list_checkpoints(run)] == ["E0001-S00000", "E0002-S00000"]
    stamps = {}
    for name in FIGURES:
        stamps[name] = (run / name).stat().st_mtime_ns
        (run / name).unlink()
    for cmd in (
        ["reconstruct", str(run)],
        ["sample", str(run), "--n", "8"],
        ["interpolate", str(run), "--a", "0", "--b", "50"],
        ["plot", str(run)],
    ):
        assert main(cmd) == 0, cmd
    assert all((run / name).is_file() for name in FIGURES)
    # the run refuses to be overwritten from the CLI too, with a one-line error
    assert main(["train", "--config", "optimized", "--epochs", "1", "--data-path", str(npz), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and "--force" in err


def test_cli_resume_extends_a_run(tmp_path, small_data, capsys):
    npz = tmp_path / "small.npz"
    write_npz(npz, small_data)
    run = tmp_path / "run"
    args = ["--no-progress", "--threads", "1"]
    assert main(["train", "--config", "baseline", "--epochs", "1", "--data-path", str(npz), "--out", str(run), *args]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2", *args]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def _mmapped_bytes() -> int | None:
    """Bytes glibc currently holds in mmap'd chunks (mallinfo2().hblkhd), or None without glibc 2.33+."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
        ]

    fn.restype = MallInfo2
    return fn().hblkhd


def test_heap_only_malloc_keeps_large_buffers_off_mmap_and_restores_it():
    from mnist_vae.accel.malloc import heap_only_malloc

    if _mmapped_bytes() is None:
        pytest.skip("needs glibc's mallinfo2")
    big = 64 << 20  # above the largest mmap threshold glibc accepts (32 MiB)
    with heap_only_malloc() as applied:
        assert applied
        before = _mmapped_bytes()
        buf = torch.empty(big, dtype=torch.uint8)
        assert _mmapped_bytes() - before < big  # served from the heap
        del buf
    # After the block: a buffer larger than anything the heap could hold free (its top is trimmed
    # above 128 MiB, see tune_malloc), so only mmap can serve it.
    after = 256 << 20
    before = _mmapped_bytes()
    buf = torch.empty(after, dtype=torch.uint8)
    assert _mmapped_bytes() - before >= after  # mmap again after the block
    del buf


def test_configs_show_prints_only_toml_that_config_accepts(tmp_path, capsys, small_data):
    assert main(["configs", "--show", "optimized"]) == 0
    toml_text = capsys.readouterr().out
    path = tmp_path / "my.toml"
    path.write_text(toml_text)
    from mnist_vae.config import load_toml
    from mnist_vae.presets import get_config

    assert load_toml(path).model == get_config("optimized").model  # the whole output is the config, nothing else
    assert main(["configs", "--show", "nosuch"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().startswith("error: unknown configuration 'nosuch'") and len(err.strip().splitlines()) == 1


def test_final_line_reports_the_runs_mean_speed_and_one_epoch_in_the_singular(tmp_path, capsys):
    npz = write_npz(tmp_path / "d.npz")
    assert (
        main(
            [
                "train",
                "--config",
                "optimized",
                "--data-path",
                str(npz),
                "--epochs",
                "1",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "r"),
                "--no-progress",
            ]
        )
        == 0
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done: 1 epoch in ") and "img/s on average" in last and "1 epochs" not in last
