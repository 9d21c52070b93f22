"""Training: ``train()`` sets a run up, the :class:`Trainer` runs the loop, callbacks do the rest."""

from .run import train
from .trainer import Interrupted, Trainer

__all__ = ["Interrupted", "Trainer", "train"]
