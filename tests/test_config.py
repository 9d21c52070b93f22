import pytest

from mnist_vae.config import ModelConfig, RunConfig, TrainConfig, load_toml
from mnist_vae.errors import ConfigError
from mnist_vae.kinds import LSTMOptions, MLPOptions
from mnist_vae.presets import get_config, list_configs

SEVEN = ["baseline", "deeper-decoder", "dropout", "optimized", "fast-lr", "dense-encoder", "original"]


def test_the_seven_configurations_are_listed_in_order_then_the_reference_the_control_and_beyond():
    assert list_configs("write-up") == SEVEN
    assert list_configs("reference") == ["mlp-vae"] and list_configs("control") == ["no-kl"] and list_configs("beyond") == ["lstm-plus"]
    assert list_configs() == [*SEVEN, "mlp-vae", "no-kl", "lstm-plus"]


def test_mlp_vae_is_the_pytorch_examples_model():
    from mnist_vae.models import VAE, count_parameters

    cfg = get_config("mlp-vae")
    # fc1 784-400, fc21/fc22 400-20, fc3 20-400, fc4 400-784 (pytorch/examples vae/main.py): 652,824 parameters
    assert count_parameters(VAE(cfg.model)) == 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784
    assert (cfg.train.lr, cfg.train.batch_size, cfg.model.latent_dim) == (1e-3, 128, 20)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        get_config("optimised")
    assert "optimised" in str(e.value) and all(n in str(e.value) for n in SEVEN)


@pytest.mark.parametrize("name", SEVEN)
def test_toml_round_trip(name, tmp_path):
    cfg = get_config(name)
    path = tmp_path / f"{name}.toml"
    path.write_text(cfg.to_toml())
    assert load_toml(path) == cfg


def test_table_values_from_the_issue():
    assert get_config("baseline").train.lr == 5e-4 and get_config("optimized").train.lr == 1e-3
    assert get_config("fast-lr").model == get_config("baseline").model and get_config("fast-lr").train.lr == 1e-3
    dense = get_config("dense-encoder").model
    assert dense.encoder == "mlp" and dense.encoder_options == MLPOptions(dense=(256, 128))
    orig = get_config("original").model
    enc, dec = orig.encoder_options, orig.decoder_options
    assert (enc.readout, orig.latent_dim, enc.relu_on_mu, dec.dropout, dec.head) == ("all", 64, True, 0.75, "dense")
    assert get_config("dropout").model.decoder_options.dropout == 0.25


def test_override_by_field_name_and_section():
    cfg = get_config("optimized").override(["latent_dim=2", "train.lr=0.002", "binarize=dynamic"])
    assert cfg.model.latent_dim == 2 and cfg.train.lr == 0.002 and cfg.train.binarize == "dynamic"


@pytest.mark.parametrize(
    "assignment, words",
    [
        ("lr=-1", "lr"),
        ("latent_dim=0", "latent_dim"),
        ("dropout=1.0", "dropout"),
        ("no_such_field=3", "no_such_field"),
        ("epochs=ten", "epochs"),
        ("binarize=sometimes", "binarize"),
    ],
)
def test_bad_overrides_name_the_field(assignment, words):
    with pytest.raises(ConfigError) as e:
        get_config("baseline").override([assignment])
    assert words in str(e.value) and "\n" not in str(e.value)


def test_decoder_that_misses_28x28_says_what_it_reaches():
    with pytest.raises(ConfigError) as e:
        ModelConfig(decoder_options={"convs": [[32, 2], [1, 1]]})
    assert "decoder_options.convs" in str(e.value) and "14x14" in str(e.value) and "28x28" in str(e.value)


def test_every_kind_is_configured_by_its_options_and_old_fields_still_read(tmp_path):
    lstm = RunConfig.from_dict({"model": {"encoder_options": {"hidden": 32, "readout": "mean"}}}).model.encoder_options
    assert lstm == LSTMOptions(hidden=32, readout="mean")
    # A config.toml of the time before options: every old field written out, the mlp's lstm fields at their defaults.
    old = {"encoder": "mlp", "encoder_options": {}, "lstm_hidden": 64, "bidirectional": False, "encoder_hidden": [256, 128],
           "decoder_dense": [128, 3136], "decoder_reshape": [64, 7, 7], "decoder_convs": [[64, 2], [32, 2], [1, 1]], "dropout": 0.0}  # fmt: skip
    assert RunConfig.from_dict({"name": "dense-encoder", "model": old, "train": {"lr": 1e-3}}).model == get_config("dense-encoder").model
    with pytest.raises(ConfigError, match="bidirectional = True is not an option of encoder = 'mlp'"):
        RunConfig.from_dict({"model": {**old, "bidirectional": True}})
    # --set and replace() take the old names too, over the options the config has.
    assert get_config("optimized").override(["readout=all"]).model == get_config("lstm-plus").model
    assert get_config("optimized").replace(readout="all").model == get_config("lstm-plus").model
    assert get_config("baseline").override(["encoder_options.hidden=32"]).model.encoder_options.hidden == 32
    assert RunConfig().replace(encoder="mlp").model.encoder_options == MLPOptions()  # another kind: its own defaults
    with pytest.raises(ConfigError, match="encoder_options: options of another kind"):
        RunConfig().replace(encoder_options=LSTMOptions(hidden=8), encoder="mlp")
    with pytest.raises(ConfigError, match="encoder_options.*unknown key.*'width'"):
        RunConfig.from_dict({"model": {"encoder_options": {"width": 3}}})
    path = tmp_path / "c.toml"
    path.write_text(get_config("original").to_toml())
    assert "[model.decoder_options]" in path.read_text() and load_toml(path) == get_config("original")


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nlatent_dims = 4\n")
    with pytest.raises(ConfigError) as e:
        load_toml(path)
    assert "latent_dims" in str(e.value) and str(path) in str(e.value)


def test_from_dict_rejects_wrong_types():
    with pytest.raises(ConfigError):
        RunConfig.from_dict({"train": {"epochs": 2.5}})
    with pytest.raises(ConfigError):
        RunConfig.from_dict({"model": {"decoder_convs": [[32, 2, 9]]}})
    assert RunConfig.from_dict({"train": {"lr": 1}}).train.lr == 1.0
    assert TrainConfig().batch_size == 100 and TrainConfig().epochs == 50
