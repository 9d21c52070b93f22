"""The project's own error types: every failure a user can cause is one of these.

The CLI turns them into a one-line message and a non-zero exit, so each message must name the
file or field at fault and what is wrong with it.
"""


class MnistVaeError(Exception):
    """Base class: an error the user can act on (bad input, bad file, bad config)."""


class ConfigError(MnistVaeError, ValueError):
    """A configuration field is unknown, mistyped or out of range."""


class DataError(MnistVaeError):
    """A data file is missing, truncated, foreign, or fails its checksum; or a download failed."""


class CheckpointError(MnistVaeError):
    """A checkpoint or run folder is missing, damaged, or does not match the configuration."""


class RunExistsError(MnistVaeError):
    """The output folder already holds a run and neither --resume nor --force was given."""


class TrainingDiverged(MnistVaeError):
    """The loss became NaN or infinite."""


class WriteError(MnistVaeError):
    """An output file or folder cannot be written (disk full, read-only, no permission)."""
