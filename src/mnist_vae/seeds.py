"""Every random stream of a training run, derived from its one ``train.seed`` in one place.

A run's reproducibility (training/state.py) rests on each stream being seeded the same way by
the trainer, by a resume and by anyone who measures the run again (runs/pretrained.py); so the
derivations live here, and nowhere else spells them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Seeds:
    """The seeds of one run: ``Seeds(cfg.train.seed)``."""

    seed: int

    @property
    def weights(self) -> int:
        """torch's global generator: initial weights, then reparameterisation noise and dropout."""
        return self.seed

    @property
    def data(self) -> int:
        """The data stream: each epoch's shuffle and dynamic binarisation."""
        return self.seed

    @property
    def snapshot(self) -> int:
        """The fixed latent codes decoded after marked epochs."""
        return self.seed + 1

    def test_elbo(self, epochs_done: int) -> int:
        """The generator of the test −ELBO measured after ``epochs_done + 1`` epochs (its own, so measuring never shifts training)."""
        return self.seed * 1000 + epochs_done
