"""Bring your own model: the example GRU plugin through real entry points, and plugins registered from Python.

The example package (examples/gru_encoder) is made available as an installed distribution would
be: its module and a ``mnist_vae_gru-0.1.0.dist-info`` (METADATA, and entry_points.txt written from
its pyproject.toml) in a temporary folder on ``sys.path`` (``PYTHONPATH`` for the CLI subprocesses),
so ``importlib.metadata`` finds the entry point exactly as it finds one pip installed.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import mnist_vae
from mnist_vae.config import EvalConfig, ModelConfig, RunConfig, load_toml
from mnist_vae.errors import ConfigError
from mnist_vae.models import VAE, PluginError, registry
from mnist_vae.runs.checkpoint import latest_checkpoint, list_checkpoints, read_weights
from mnist_vae.runs.folder import open_run
from mnist_vae.training import Interrupted, train

from helpers import write_npz

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gru_encoder"


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """The example plugin, "installed" in a temporary folder on sys.path (its entry points from its pyproject.toml)."""
    root = tmp_path_factory.mktemp("site")
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copy(EXAMPLE / "mnist_vae_gru.py", root)
    info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups.items())
    )
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("mnist_vae_gru", None)
    importlib.invalidate_caches()


@pytest.fixture(autouse=True)
def _registry_restored():
    """Each test starts from and leaves the registry as it found it (kinds registered, entry points loaded)."""
    kinds, loaded = {role: dict(k) for role, k in registry.REGISTRY.items()}, dict(registry._loaded)
    yield
    for role, k in registry.REGISTRY.items():
        k.clear()
        k.update(kinds[role])
    registry._loaded.clear()
    registry._loaded.update(loaded)


def gru_config(epochs: int = 1, **changes) -> RunConfig:
    return load_toml(EXAMPLE / "gru.toml").replace(epochs=epochs, threads=1, device="cpu", **changes)


def env_with(plugin_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(([str(plugin_dir)] if plugin_dir else []) + paths)
    return env


def cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_vae", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


# --- the example plugin, through its entry point ----------------------------------------------------


def test_the_example_plugin_is_found_through_its_entry_point(plugin_dir):
    from importlib.metadata import entry_points

    (ep,) = [ep for ep in entry_points(group="mnist_vae.models") if ep.name == "gru"]
    assert ep.value == "mnist_vae_gru:register" and ep.dist.name == "mnist-vae-gru"
    assert "gru" not in registry.REGISTRY["encoder"]  # loaded when a model first asks for it
    cfg = gru_config()
    assert cfg.model.encoder == "gru" and dict(cfg.model.encoder_options) == {"hidden": 64}
    model = VAE(cfg.model)
    assert type(model.encoder).__name__ == "GRUEncoder" and model.encoder.gru.hidden_size == 64
    assert registry.plugin_records(cfg.model) == {
        "encoder": {"kind": "gru", "distribution": "mnist-vae-gru", "version": "0.1.0", "module": "mnist_vae_gru"}
    }
    assert registry.encoder_kinds() == ["lstm", "mlp", "gru"]
    # The config round-trips through TOML and dicts, options included, and --set reaches one option.
    assert load_toml_text(cfg.to_toml(), plugin_dir) == cfg and RunConfig.from_dict(cfg.to_dict()) == cfg
    wide = cfg.override(["encoder_options.hidden=32", "model.encoder_options.bidirectional=true"])
    assert dict(wide.model.encoder_options) == {"hidden": 32, "bidirectional": True}
    assert VAE(wide.model).encoder.gru.bidirectional and hash(wide) != hash(cfg)
    assert pickle.loads(pickle.dumps(wide)) == wide  # study jobs are pickled to worker processes


def load_toml_text(text: str, where: Path) -> RunConfig:
    path = where / "roundtrip.toml"
    path.write_text(text)
    return load_toml(path).replace(name="gru")


def test_train_resume_bitwise_evaluate_export_load_and_serve(plugin_dir, tmp_path, small_data):
    from mnist_vae.evaluation.run import evaluate_run
    from mnist_vae.serve.export import export_onnx

    kw = dict(dataset=small_data, progress=False, figures=False)
    cfg = gru_config(epochs=2)
    train(cfg, tmp_path / "straight", **kw)
    # 400 images / batch 100 = 4 steps per epoch: stopped mid-epoch 1, resumed, it ends with the same weights.
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "resumed", stop_after_steps=3, **kw)
    train(cfg, tmp_path / "resumed", resume=True, **kw)
    a, b = latest_checkpoint(tmp_path / "straight").weights, latest_checkpoint(tmp_path / "resumed").weights
    assert any(k.startswith("encoder.gru.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "resumed" / "meta.json").read_text())
    assert meta["plugins"]["encoder"] == {"kind": "gru", "distribution": "mnist-vae-gru", "version": "0.1.0", "module": "mnist_vae_gru"}

    ev = evaluate_run(tmp_path / "straight", EvalConfig(k=2, n_samples=20, chunk=64), dataset=small_data, screen=True)
    assert ev.epoch == 2 and ev.iwae["nll"] > 0 and ev.screen and ev.samples is None

    run = mnist_vae.load_run(tmp_path / "straight")
    assert run.sample(3).shape == (3, 28, 28) and run.encode(small_data.test_images[:2])[0].shape == (2, 16)
    files = export_onnx(open_run(tmp_path / "straight").model, tmp_path / "onnx", "gru")
    ort = pytest.importorskip("onnxruntime")
    x = small_data.test_images[:3].float() / 255
    mu = ort.InferenceSession(str(files[0])).run(["mu"], {"images": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(mu), run.model.encode(x)[0], rtol=1e-4, atol=1e-4)

    pytest.importorskip("httpx", reason="httpx (needed by FastAPI's TestClient) is not installed")
    from fastapi.testclient import TestClient

    from mnist_vae.serve.app import create_app

    with TestClient(create_app(tmp_path / "straight", dataset=small_data)) as client:
        assert client.get("/api/info").json()["latent_dim"] == 16
        assert client.post("/api/samples", json={"n": 2}).status_code == 200


def test_cli_trains_evaluates_and_studies_it_and_without_it_says_what_to_install(plugin_dir, tmp_path):
    npz = write_npz(tmp_path / "digits.npz")
    mine = tmp_path / "configs"
    mine.mkdir()
    shutil.copy(EXAMPLE / "gru.toml", mine / "gru.toml")
    env = env_with(plugin_dir)
    common = ["--data-path", str(npz), "--threads", "1"]
    done = cli(["train", "--config", "configs/gru.toml", "--epochs", "1", "--out", "run", "--no-progress", *common], env, tmp_path)
    assert done.returncode == 0, done.stderr
    done = cli(["evaluate", "run", "--k", "2", "--samples", "50", "--threads", "1", "--no-progress"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["epoch"] == 1
    # A study of the plugin's configuration (a TOML path, and a variant of it) next to `optimized`: one seed,
    # one epoch, K = 2, a few samples, judged by the classifier `evaluate` cached for these digits.
    configs = "optimized,configs/gru.toml,configs/gru.toml[encoder_options.hidden=32]"
    args = ["study", "--configs", configs, "--seeds", "1", "--epochs", "1", "--k", "2", "--samples", "50", "--out", "study", *common]
    done = cli(args, env, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {
        line.split("|")[1].strip(): line for line in (tmp_path / "study" / "report.md").read_text().splitlines() if line.startswith("| ")
    }
    assert {"optimized", "configs/gru.toml", "configs/gru.toml[encoder_options.hidden=32]"} <= rows.keys()
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    gru_rows = [r for r in study["rows"] if r["config"] == "configs/gru.toml"]
    assert len(gru_rows) == 1 and gru_rows[0]["nll"] > 0 and "coverage" in gru_rows[0]  # a full row, not a screen's
    variant = load_toml(tmp_path / "study" / "runs" / "configs+gru.toml+encoder_options.hidden=32" / "seed0" / "config.toml")
    assert dict(variant.model.encoder_options) == {"hidden": 32}

    # Without the plugin installed, every command that opens the run says in one line what to install.
    bare = env_with(None)
    for args in (["evaluate", "run", "--k", "2"], ["train", "--resume", "run", "--epochs", "2"], ["export", "run", "--out", "onnx"]):
        done = cli(args, bare, tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "'gru'" in done.stderr and "pip install 'mnist-vae-gru==0.1.0'" in done.stderr


# --- the contract, the options, a missing plugin ------------------------------------------------------


class Returns(nn.Module):
    """A deliberately broken plugin: returns whatever ``make(x)`` gives."""

    def __init__(self, make) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.make = make

    def forward(self, x):
        return self.make(x)


@dataclass(frozen=True)
class Width:
    width: int = 32


def good_encoder(cfg: ModelConfig, options: Width) -> nn.Module:
    return Flat(cfg.latent_dim, options.width)


class Flat(nn.Module):
    """A small valid encoder: the flat image through one hidden layer to μ and log σ²."""

    def __init__(self, latent_dim: int, width: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Dropout(0.5))
        self.heads = nn.Linear(width, 2 * latent_dim)

    def forward(self, x):
        return self.heads(self.hidden(x)).chunk(2, dim=1)


@pytest.mark.parametrize(
    "role, make, returned",
    [
        ("encoder", lambda x: torch.zeros(len(x), 16), "returned a tensor [2, 16] (float32) for x [2, 28, 28]"),
        (
            "encoder",
            lambda x: (torch.zeros(len(x), 8),) * 2,
            "returned a tuple of 2 (a tensor [2, 8] (float32), a tensor [2, 8] (float32))",
        ),
        ("encoder", lambda x: (torch.zeros(len(x), 16, dtype=torch.long),) * 2, "returned a tuple of 2 (a tensor [2, 16] (int64)"),
        ("decoder", lambda z: torch.zeros(len(z), 784), "returned a tensor [2, 784] (float32) for z [2, 16]"),
        ("decoder", lambda z: [torch.zeros(len(z), 1, 28, 28)], "returned a list of 1 (a tensor [2, 1, 28, 28] (float32))"),
    ],
)
def test_a_plugin_that_breaks_the_contract_gets_one_line_naming_it(role, make, returned):
    register = mnist_vae.register_encoder if role == "encoder" else mnist_vae.register_decoder
    register("broken", lambda cfg, options: Returns(make))
    with pytest.raises(PluginError) as e:
        VAE(ModelConfig(**{role: "broken"}))
    msg = str(e.value)
    expected = "(mu, logvar), each a float tensor [2, 16]" if role == "encoder" else "logits, a float tensor [2, 1, 28, 28]"
    assert f"{role} 'broken' (registered from Python in test_plugins)" in msg and returned in msg and expected in msg
    assert "\n" not in msg and isinstance(e.value, ConfigError)


def test_a_plugin_that_fails_to_build_or_run_gets_one_line_and_the_cli_prints_it(tmp_path, capsys):
    from mnist_vae.cli import main

    def crash(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied\n(second line)")

    mnist_vae.register_encoder("crashes", lambda cfg, options: Returns(crash))
    mnist_vae.register_encoder("no-module", lambda cfg, options: "not a module")
    mnist_vae.register_decoder("raises", lambda cfg, options: 1 / 0)
    with pytest.raises(PluginError, match=r"encoder 'crashes' .* failed on x \[2, 28, 28\]: RuntimeError: mat1 and mat2 .*; expected"):
        VAE(ModelConfig(encoder="crashes"))
    with pytest.raises(PluginError, match=r"encoder 'no-module' .*: build returned a str; expected a torch.nn.Module"):
        VAE(ModelConfig(encoder="no-module"))
    with pytest.raises(PluginError, match=r"decoder 'raises' .* failed to build: ZeroDivisionError"):
        VAE(ModelConfig(decoder="raises"))
    toml = tmp_path / "bad.toml"
    toml.write_text('[model]\nencoder = "crashes"\n')
    assert main(["train", "--config", str(toml), "--epochs", "1", "--dataset", "embedded", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: encoder 'crashes'") and not (tmp_path / "run").exists()


def test_the_contract_check_changes_no_weights_modes_or_random_draws():
    mnist_vae.register_encoder("flat", good_encoder, options=Width)
    cfg = ModelConfig(encoder="flat")
    plugin = registry.get_plugin("encoder", "flat")
    module = good_encoder(cfg, Width()).train()
    module.hidden[0].eval()  # a mode of its own, kept
    state, weights = torch.get_rng_state(), {k: v.clone() for k, v in module.state_dict().items()}
    registry.check_contract(plugin, module, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(weights[k], v) for k, v in module.state_dict().items())
    assert module.training and module.hidden[1].training and not module.hidden[0].training


def test_options_are_checked_like_config_fields_when_the_model_is_built():
    @dataclass(frozen=True)
    class Opts:
        width: int = 32
        scale: float = 1.0

        def __post_init__(self) -> None:
            if self.width < 1:
                raise ValueError(f"width must be >= 1, got {self.width}")

    given = []
    mnist_vae.register_encoder("flat", lambda cfg, options: given.append(options) or good_encoder(cfg, options), options=Opts)
    assert VAE(ModelConfig(encoder="flat", encoder_options={"width": 8})).encoder.heads.in_features == 8
    VAE(ModelConfig(encoder="flat", encoder_options={"scale": 2}))
    assert given == [Opts(8, 1.0), Opts(32, 2.0)] and isinstance(given[1].scale, float)  # the dataclass, an int made a float
    cases = [
        (
            "flat",
            {"widht": 8},
            r"encoder_options of encoder 'flat' \(registered from Python in test_plugins\): unknown key\(s\) \['widht'\]; valid keys: scale, width",
        ),
        ("flat", {"width": "8"}, "width = '8' is not a valid int"),
        ("flat", {"width": True}, "width = True is not a valid int"),
        ("flat", {"width": 0}, "encoder_options of encoder 'flat' .*: width must be >= 1, got 0"),
    ]
    for kind, options, message in cases:
        cfg = ModelConfig(encoder=kind, encoder_options=options)  # the config holds them: the model factory checks them
        with pytest.raises(ConfigError, match=message) as e:
            VAE(cfg)
        assert "\n" not in str(e.value)
    # A built-in kind's options are checked the same way, as soon as the config is built.
    with pytest.raises(ConfigError, match=r"encoder_options: unknown key\(s\) \['hiden'\]; valid keys: bidirectional, dense, hidden"):
        ModelConfig(encoder="lstm", encoder_options={"hiden": 8})
    assert VAE(ModelConfig(encoder="lstm", encoder_options={"hidden": 8})).encoder.lstm.hidden_size == 8
    with pytest.raises(ConfigError, match=r"encoder: 'gruu' is not one of lstm, mlp, .*flat"):
        VAE(ModelConfig(encoder="gruu"))
    with pytest.raises(ConfigError, match=r"encoder: expected the name of a kind, got 3"):
        ModelConfig(encoder=3)
    with pytest.raises(ConfigError, match=r"encoder_options = 3 is not a table of options"):
        RunConfig.from_dict({"model": {"encoder_options": 3}})


def test_train_checks_the_kinds_and_their_options_before_it_reads_any_data(tmp_path, monkeypatch):
    import mnist_vae.training.run as run_module

    monkeypatch.setattr(run_module, "prepare_data", lambda *a, **k: pytest.fail("data was read before the kinds were checked"))
    for model, message in [
        ({"encoder": "gruu"}, "encoder: 'gruu' is not one of"),
        ({"encoder_options": {"hiden": 3}}, r"unknown key\(s\) \['hiden'\]"),
    ]:
        with pytest.raises(ConfigError, match=message):
            cfg = RunConfig.from_dict({"model": model, "train": {"epochs": 1, "threads": 1}})
            train(cfg, tmp_path / "run", progress=False, figures=False)
        assert not (tmp_path / "run").exists()


def test_an_unknown_kind_or_option_stops_train_in_one_line_before_anything_is_written(tmp_path, capsys):
    from mnist_vae.cli import main

    mnist_vae.register_encoder("flat", good_encoder, options=Width)
    for n, (model, message) in enumerate(
        [
            ('encoder = "gruu"', "error: encoder: 'gruu' is not one of lstm, mlp, "),
            ('encoder = "flat"\nencoder_options = { widht = 3 }', "error: encoder_options of encoder 'flat' "),
        ]
    ):
        toml = tmp_path / f"bad{n}.toml"
        toml.write_text(f"[model]\n{model}\n")
        assert main(["train", "--config", str(toml), "--epochs", "1", "--dataset", "embedded", "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(message), err
        assert not (tmp_path / "run").exists()


def test_registering_is_checked_and_built_in_kinds_stay():
    with pytest.raises(PluginError, match="the built-in encoder 'lstm' cannot be replaced"):
        mnist_vae.register_encoder("lstm", good_encoder)
    with pytest.raises(PluginError, match="kind must be a name"):
        mnist_vae.register_encoder("my gru", good_encoder)
    with pytest.raises(PluginError, match="options must be a dataclass type"):
        mnist_vae.register_encoder("flat", good_encoder, options={"width": 3})
    mnist_vae.register_encoder("flat", good_encoder, options=Width)
    mnist_vae.register_encoder("flat", good_encoder, options=Width)  # the same again: fine
    with pytest.raises(
        PluginError, match=r"encoder 'flat' \(registered from Python in test_plugins\) is already registered; pass replace=True"
    ):
        mnist_vae.register_encoder("flat", lambda cfg, options: None)
    mnist_vae.register_encoder("flat", good_encoder, replace=True)
    assert registry.get_plugin("encoder", "flat").options is None

    @registry.register("decoder", "dense784")  # the decorator, as timm's register_model
    def dense(cfg: ModelConfig, options) -> nn.Module:
        return nn.Sequential(nn.Linear(cfg.latent_dim, 784), nn.Unflatten(1, (1, 28, 28)))

    assert registry.REGISTRY["decoder"]["dense784"].build is dense and registry.decoder_kinds() == ["conv", "dense784"]


def test_a_decoder_plugin_and_the_inference_copy():
    def dense(cfg: ModelConfig, options) -> nn.Module:
        return nn.Sequential(nn.Linear(cfg.latent_dim, 784), nn.Unflatten(1, (1, 28, 28)))

    mnist_vae.register_decoder("dense784", dense)
    cfg = ModelConfig(decoder="dense784")
    model = VAE(cfg)
    assert registry.plugin_records(cfg)["decoder"]["kind"] == "dense784" and "encoder" not in registry.plugin_records(cfg)
    model.channels_last = True  # a plugin's decoder keeps its own layout
    assert model.channels_last is False
    x = torch.rand(3, 28, 28)
    torch.testing.assert_close(model.inference_copy().reconstruct(x), model.eval().reconstruct(x))


def test_a_run_whose_plugin_is_gone_says_what_to_install(plugin_dir, tmp_path, small_data):
    kw = dict(dataset=small_data, progress=False, figures=False)
    train(gru_config(1), tmp_path / "gru", **kw)
    resume = gru_config(2)
    mnist_vae.register_encoder("flat", good_encoder, options=Width)
    train(gru_config(1).replace(encoder="flat", encoder_options={}), tmp_path / "flat", **kw)
    del registry.REGISTRY["encoder"]["gru"]  # as if mnist-vae-gru were uninstalled (the entry point is not loaded again)
    del registry.REGISTRY["encoder"]["flat"]
    install = r"built with the encoder 'gru' from mnist-vae-gru 0.1.0, which is not installed here; install it: pip install 'mnist-vae-gru==0.1.0'"
    with pytest.raises(PluginError, match=install):
        open_run(tmp_path / "gru")
    with pytest.raises(PluginError, match=install):
        mnist_vae.load_run(tmp_path / "gru")
    with pytest.raises(PluginError, match=install):
        train(resume, tmp_path / "gru", resume=True, **kw)
    with pytest.raises(PluginError, match=install):
        read_weights(list_checkpoints(tmp_path / "gru")[-1] / "model.safetensors")  # a checkpoint alone says it too
    with pytest.raises(PluginError, match=r"encoder 'flat' registered from Python in test_plugins, which is not registered here"):
        open_run(tmp_path / "flat")
    mnist_vae.register_encoder("flat", good_encoder, options=Width)
    assert open_run(tmp_path / "flat").epoch == 1  # registered again: it opens


def test_an_installed_plugin_that_fails_to_load_is_named_in_one_line(tmp_path, monkeypatch):
    info = tmp_path / "mnist_vae_broken-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mnist-vae-broken\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[mnist_vae.models]\nbroken = no_such_module_here:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as e:
        VAE(ModelConfig(encoder="broken"))
    assert str(e.value) == (
        "plugin 'broken' (mnist-vae-broken 0.0.1, entry point broken = no_such_module_here:register) failed to load: "
        "ModuleNotFoundError: No module named 'no_such_module_here'"
    )
    assert "broken" not in registry.encoder_kinds()  # listing the kinds leaves it out (with a warning), and works
