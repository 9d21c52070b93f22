"""The tools people already use: TensorBoard logging, the notebook API (load_run) and ONNX export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_vae.cli import main as cli_main
from mnist_vae.errors import MnistVaeError
from mnist_vae.training import train

from _dist_helpers import QUIET, child_env, tiny_run_config
from helpers import write_npz

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz")


@pytest.fixture(scope="module")
def run_dir(tiny, tmp_path_factory) -> Path:
    """A 2-epoch run with TensorBoard logging."""
    out = tmp_path_factory.mktemp("runs") / "demo"
    train(tiny_run_config(tiny, 2, 100), out, tensorboard=True, **QUIET)
    return out


# --- TensorBoard ------------------------------------------------------------------------------------


def test_tensorboard_scalars_images_and_hparams(run_dir):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea_mod.EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for tag, key in (
        ("train/loss", "train_loss"),
        ("test/loss", "test_loss"),
        ("test/recon", "test_recon"),
        ("test/kl", "test_kl"),
        ("train/recon", "train_recon"),
        ("train/kl", "train_kl"),
    ):
        assert tag in tags["scalars"], tag
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([h[key] for h in history], rel=1e-6)
    images = acc.Images("samples/fixed_z")
    assert [e.step for e in images] == [1, 2]
    assert (images[0].width, images[0].height) == (4 * 30 + 2, 4 * 30 + 2)  # 16 digits, 4 x 4 with 2-pixel gaps
    # The HParams plugin's session-start record carries the config.
    from tensorboard.plugins.hparams import plugin_data_pb2

    contents = acc.PluginTagToContent("hparams")
    starts = [plugin_data_pb2.HParamsPluginData.FromString(c) for c in contents.values()]
    infos = [s.session_start_info for s in starts if s.HasField("session_start_info")]
    assert infos and infos[0].hparams["latent_dim"].number_value == 16
    assert infos[0].hparams["lr"].number_value == pytest.approx(tiny_cfg_lr())


def tiny_cfg_lr() -> float:
    from mnist_vae.presets import get_config

    return get_config("optimized").train.lr


def test_tensorboard_missing_is_one_clear_error(tiny, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard.") or name == "torch.utils.tensorboard":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(MnistVaeError, match=r"pip install 'mnist-vae\[tensorboard\]'"):
        train(tiny_run_config(tiny, 1, 100), tmp_path / "r", tensorboard=True, **QUIET)
    assert not (tmp_path / "r").exists()  # refused before creating the run


# --- the Python API -----------------------------------------------------------------------------------


def test_import_is_cheap_and_load_run_is_lazy():
    code = "import sys, mnist_vae; assert 'torch' not in sys.modules; from mnist_vae import load_run; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=True, timeout=120)


def test_api_shapes_kinds_and_consistency(run_dir):
    from mnist_vae import TrainedVAE, load_run
    from mnist_vae.runs.folder import open_run

    vae = load_run(run_dir)
    assert isinstance(vae, TrainedVAE) and vae.epoch == 2 and vae.latent_dim == 16
    s = vae.sample(5, seed=3)
    assert isinstance(s, torch.Tensor) and s.shape == (5, 28, 28) and 0 <= s.min() and s.max() <= 1
    assert torch.equal(s, vae.sample(5, seed=3)) and not torch.equal(s, vae.sample(5, seed=4))
    assert isinstance(vae.sample(2, seed=0, numpy=True), np.ndarray)

    model = open_run(run_dir).model
    x = s
    mu, logvar = vae.encode(x)
    with torch.no_grad():
        ref_mu, ref_logvar = model.encode(x)
        ref_recon = torch.sigmoid(model.decode(ref_mu)).reshape(5, 28, 28)
    assert torch.allclose(mu, ref_mu) and torch.allclose(logvar, ref_logvar)
    assert torch.allclose(vae.decode(mu), ref_recon, atol=1e-6)
    assert torch.allclose(vae.reconstruct(x), ref_recon, atol=1e-6)

    # numpy in -> numpy out; every accepted layout gives the same answer.
    xn = x.numpy()
    for layout in (xn, xn.reshape(5, 1, 28, 28), xn.reshape(5, 784)):
        r = vae.reconstruct(layout)
        assert isinstance(r, np.ndarray) and r.shape == (5, 28, 28)
        np.testing.assert_allclose(r, ref_recon.numpy(), atol=1e-6)
    m_np, lv_np = vae.encode(xn)
    assert isinstance(m_np, np.ndarray) and m_np.shape == (5, 16)
    assert isinstance(vae.decode(m_np), np.ndarray)
    # uint8 pixels are read as x / 255; a single image drops the batch axis.
    u8 = (xn * 255).round().astype(np.uint8)
    np.testing.assert_allclose(vae.reconstruct(u8), vae.reconstruct(u8.astype(np.float32) / 255), atol=1e-6)
    one = vae.reconstruct(u8[0])
    assert one.shape == (28, 28)
    np.testing.assert_allclose(one, vae.reconstruct(u8)[0], atol=1e-6)
    assert vae.decode(m_np[0]).shape == (28, 28)


def test_api_rejects_bad_inputs_with_one_line_errors(run_dir):
    from mnist_vae import load_run

    vae = load_run(run_dir)
    with pytest.raises(MnistVaeError, match=r"expected shape .*got \[3, 27, 27\]"):
        vae.encode(np.zeros((3, 27, 27), np.float32))
    with pytest.raises(MnistVaeError, match="uint8 pixels or floats"):
        vae.encode(np.zeros((3, 28, 28), np.int64))
    with pytest.raises(MnistVaeError, match=r"z: expected shape \[16\] or \[B, 16\]"):
        vae.decode(torch.zeros(2, 3))
    with pytest.raises(MnistVaeError, match="run folder not found"):
        load_run(run_dir.parent / "nope")


def python_blocks(md: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", md.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("doc", ["docs/api.md", "README.md"])
def test_documented_api_example_runs(doc, run_dir, tmp_path):
    md = ROOT / doc
    blocks = [b for b in python_blocks(md) if "load_run" in b] if md.exists() else []
    if not blocks:
        pytest.skip(f"{doc} has no load_run example")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(run_dir, target_is_directory=True)
    p = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "(8, 28, 28)" in p.stdout


# --- ONNX ---------------------------------------------------------------------------------------------


def test_onnx_export_matches_pytorch(run_dir, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from mnist_vae.runs.folder import open_run

    out = tmp_path / "onnx"
    assert cli_main(["export", str(run_dir), "--out", str(out)]) == 0
    assert "encoder.onnx" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx", "onnx.json"]  # no temp files left
    model = open_run(run_dir).model
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in enc.get_inputs()] == ["images"] and [o.name for o in enc.get_outputs()] == ["mu", "logvar"]
    g = torch.Generator().manual_seed(0)
    for batch in (1, 7):
        x = torch.rand((batch, 28, 28), generator=g)
        z = torch.randn((batch, 16), generator=g)
        with torch.no_grad():
            mu, logvar = model.encode(x)
            probs = torch.sigmoid(model.decode(z)).reshape(batch, 28, 28)
        o_mu, o_logvar = enc.run(None, {"images": x.numpy()})
        (o_probs,) = dec.run(None, {"z": z.numpy()})
        assert o_mu.shape == (batch, 16) and o_probs.shape == (batch, 28, 28)
        np.testing.assert_allclose(o_mu, mu.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(o_logvar, logvar.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(o_probs, probs.numpy(), atol=1e-5, rtol=0)
    info = json.loads((out / "onnx.json").read_text())
    assert info["decoder"]["inputs"] == {"z": ["batch", 16]}


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
