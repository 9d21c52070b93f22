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
