import pytest
import torch

from mnist_vae.losses import elbo_terms
from mnist_vae.models import VAE
from mnist_vae.presets import get_config, list_configs
from mnist_vae.runs.checkpoint import load_model_weights, read_weights, save_checkpoint


@pytest.mark.parametrize("name", list_configs())
def test_shapes_and_gradients_for_every_configuration(name):
    torch.manual_seed(0)
    cfg = get_config(name)
    model = VAE(cfg.model)
    x = torch.rand(4, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == (4, 1, 28, 28)
    assert mu.shape == logvar.shape == (4, cfg.model.latent_dim)
    loss, _, _ = elbo_terms(logits, x, mu, logvar)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"
    assert model.sample(3).shape == (3, 28, 28)


def test_encoder_reads_rows_with_an_lstm_of_hidden_64():
    model = VAE(get_config("baseline").model)
    assert model.encoder.lstm.input_size == 28 and model.encoder.lstm.hidden_size == 64


def test_relu_on_mu_only_in_original():
    torch.manual_seed(0)
    x = torch.rand(64, 28, 28)
    mu_orig, _ = VAE(get_config("original").model).encode(x)
    mu_base, _ = VAE(get_config("baseline").model).encode(x)
    assert (mu_orig >= 0).all() and (mu_base < 0).any()


def test_train_step_changes_weights_and_eval_pass_does_not():
    torch.manual_seed(0)
    model = VAE(get_config("dropout").model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(8, 28, 28)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    with torch.no_grad():
        model(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.train()
    loss, _, _ = elbo_terms(*model(x)[:1], x, *model.encode(x))
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert set(changed) == set(before), f"unchanged: {set(before) - set(changed)}"


def test_eval_mode_is_deterministic_given_z_and_dropout_off():
    torch.manual_seed(0)
    model = VAE(get_config("original").model).eval()
    z = torch.randn(5, 64)
    assert torch.equal(model.decode(z), model.decode(z))


@pytest.mark.parametrize("name", ["optimized", "original"])
def test_save_then_load_gives_identical_outputs(name, tmp_path):
    torch.manual_seed(1)
    cfg = get_config(name)
    model = VAE(cfg.model).eval()
    ckpt = save_checkpoint(tmp_path, cfg, model, {"state": {}}, epoch=1, step=0)
    weights, cfg2 = read_weights(ckpt / "model.safetensors")
    assert cfg2 == cfg  # the checkpoint alone rebuilds the model
    clone = VAE(cfg2.model).eval()
    load_model_weights(clone, weights, ckpt)
    x, z = torch.rand(3, 28, 28), torch.randn(3, cfg.model.latent_dim)
    assert torch.equal(model.encode(x)[0], clone.encode(x)[0])
    assert torch.equal(model.decode(z), clone.decode(z))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_dropout_keeps_units_with_probability_one_minus_p_and_rescales(p):
    from mnist_vae.models.decoder import Dropout

    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = torch.ones(200_000, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()  # the gradient flows through the kept units only, scaled like the values
    torch.testing.assert_close(x.grad, y.detach())
    assert torch.equal(layer.eval()(x), x)


# Built-in models through the model registry stay bitwise what they were before it. Made with the
# code of commit 78a8714 (before models/registry.py), per preset: torch.manual_seed(0); VAE(cfg.model);
# the sha256 (first 16 hex digits) over every state_dict entry in order (its name, str(tuple(shape)),
# str(dtype), then the tensor's bytes); torch.rand(1).item() right after (the RNG consumed at init);
# then in eval mode, x = torch.rand(3, 28, 28) and eps = torch.randn(3, latent_dim) from a generator
# seeded 1, and the float64 sums of logits, mu and logvar of model(x, eps).
BEFORE_REGISTRY = {
    "baseline": ("46b413cff8389229", 0.4666748642921448, -199.1564024090767, -0.23300907760858536, 0.5029859803617001),
    "deeper-decoder": ("eb4b6b35c3dac91d", 0.6428105235099792, 548.8158409893513, -0.23300907760858536, 0.5029859803617001),
    "dropout": ("3bc92893564641be", 0.4666748642921448, -199.1564024090767, -0.23300907760858536, 0.5029859803617001),
    "optimized": ("64a6f7ca25204f98", 0.057245850563049316, 1011.6396692693233, -0.23300907760858536, 0.5029859803617001),
    "fast-lr": ("46b413cff8389229", 0.4666748642921448, -199.1564024090767, -0.23300907760858536, 0.5029859803617001),
    "dense-encoder": ("b459405ec4eb5bab", 0.054198622703552246, -584.9899292588234, 0.4436501171439886, -0.22370988549664617),
    "original": ("470adf5746926da4", 0.38104093074798584, -0.038308252886054106, 4.611895451322198, 1.0069172974908724),
    "mlp-vae": ("de144e59b59baad5", 0.667754590511322, 20.620199041906744, -2.1158859077841043, 0.6198982344940305),
    "no-kl": ("64a6f7ca25204f98", 0.057245850563049316, 1011.6396692693233, -0.23300907760858536, 0.5029859803617001),
    "lstm-plus": ("a44b3dffbf55cdb1", 0.8746432662010193, 403.9142376445234, -0.42110150633379817, 0.7447909398470074),
}


def _digest(state: dict) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(str(v.dtype).encode())
        h.update(v.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", list(BEFORE_REGISTRY))
def test_built_in_models_are_bitwise_what_they_were_before_the_registry(name):
    digest, next_draw, logits_sum, mu_sum, logvar_sum = BEFORE_REGISTRY[name]
    cfg = get_config(name).model
    torch.manual_seed(0)
    model = VAE(cfg)
    assert torch.rand(1).item() == next_draw  # the same random draws at init, no more, no fewer
    assert _digest(model.state_dict()) == digest  # the same parameter names, order, shapes and values
    g = torch.Generator().manual_seed(1)
    x, eps = torch.rand(3, 28, 28, generator=g), torch.randn(3, cfg.latent_dim, generator=g)
    with torch.no_grad():
        logits, mu, logvar = model.eval()(x, eps)
    # (sums over a few hundred floats: equal up to the CPU's summation order)
    assert logits.double().sum().item() == pytest.approx(logits_sum, rel=1e-6, abs=1e-6)
    assert mu.double().sum().item() == pytest.approx(mu_sum, rel=1e-6, abs=1e-6)
    assert logvar.double().sum().item() == pytest.approx(logvar_sum, rel=1e-6, abs=1e-6)


def test_built_in_kinds_are_registered_and_pass_the_plugin_contract():
    from mnist_vae.models import registry

    assert registry.encoder_kinds()[:2] == ["lstm", "mlp"] and registry.decoder_kinds()[0] == "conv"
    for name in ("optimized", "mlp-vae", "original"):
        cfg = get_config(name).model
        model = VAE(cfg)
        registry.check_contract(registry.get_plugin("encoder", cfg.encoder), model.encoder, cfg)
        registry.check_contract(registry.get_plugin("decoder", cfg.decoder), model.decoder, cfg)
        assert registry.plugin_records(cfg) == {}  # built-in kinds are not recorded as plugins
    assert VAE(get_config("mlp-vae").model).encoder.lstm is None  # as before the registry (tests/test_flops.py reads it)
