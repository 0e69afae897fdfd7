"""The one exception family the library raises for a user's mistake.

The CLI turns any `CharlstmError` into a one-line message and exit status 2;
anything else is a bug and keeps its traceback.
"""


class CharlstmError(Exception):
    """A problem the user can fix: bad input, bad option, bad checkpoint."""


class ConfigError(CharlstmError):
    """An option or stored configuration value is out of range or mistyped."""


class CorpusError(CharlstmError):
    """The training text cannot be read or is unusable."""


class CheckpointError(CharlstmError):
    """A checkpoint is missing, incomplete, foreign or inconsistent."""
