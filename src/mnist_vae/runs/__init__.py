"""Run folders: claiming and opening them, and the checkpoints inside."""

from .checkpoint import Checkpoint, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .folder import RUN_MARKER, Run, open_run, read_run_config

__all__ = [
    "RUN_MARKER",
    "Checkpoint",
    "Run",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "open_run",
    "read_run_config",
    "save_checkpoint",
]
