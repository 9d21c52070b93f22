"""A run folder written by the code of issue 28's start (tests/fixtures/run-v0) still opens and decodes the same.

The folder was written by ``mnist-vae train --config optimized`` with a shrunk model (latent 2, LSTM 8, small
decoder) for one epoch on 200 digits; its figures were dropped. Refactors of the configuration or the model
registry must keep it opening, with the same weights giving the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnist_vae import load_run
from mnist_vae.runs.folder import read_run_config

RUN = Path(__file__).with_name("fixtures") / "run-v0"


def test_old_run_folder_config_reads() -> None:
    cfg = read_run_config(RUN)
    assert (cfg.name, cfg.model.encoder, cfg.model.decoder) == ("optimized", "lstm", "conv")
    # Written before the built-in kinds had options: its [model] fields are read into them.
    assert "lstm_hidden = 8" in (RUN / "config.toml").read_text()
    enc, dec = cfg.model.encoder_options, cfg.model.decoder_options
    assert (cfg.model.latent_dim, enc.hidden, dec.dense) == (2, 8, (8, 392))
    assert dec.convs == ((4, 2), (2, 2), (1, 1))
    assert (cfg.train.epochs, cfg.train.threads, cfg.train.lr) == (1, 1, 1e-3)


def test_old_run_folder_decodes_the_same() -> None:
    vae = load_run(RUN)
    assert (vae.epoch, len(vae.history), vae.latent_dim) == (1, 1, 2)
    x = torch.linspace(0, 1, 784).reshape(28, 28)
    # Sums recorded when the fixture was written; the same weights must give the same pixels.
    assert float(vae.reconstruct(x).double().sum()) == pytest.approx(426.31845074892044, rel=1e-6)
    assert float(vae.sample(3, seed=0).double().sum()) == pytest.approx(1278.471058666706, rel=1e-6)


def test_resume_may_change_only_the_resumable_fields_and_the_error_names_the_field() -> None:
    from mnist_vae.config import RESUMABLE
    from mnist_vae.errors import ConfigError
    from mnist_vae.runs.folder import resume_point

    cfg = read_run_config(RUN)
    assert RESUMABLE == ("epochs", "threads")
    ckpt = resume_point(RUN, cfg.replace(epochs=5, threads=3))
    assert ckpt is not None and ckpt.path.name == "E0001-S00000"
    for change, name in (
        ({"lr": 0.5}, "train.lr"),
        ({"latent_dim": 3}, "model.latent_dim"),
        ({"threads": 2, "seed": 7}, "train.seed"),
        ({"readout": "mean"}, r"model\.encoder_options\.readout"),
    ):
        with pytest.raises(ConfigError, match=rf"may only change train\.epochs and train\.threads; {name} is"):
            resume_point(RUN, cfg.replace(**change))
