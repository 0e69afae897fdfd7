"""The one exception family the library raises for a user's mistake, and
how paths are shown in what users are told.

The CLI turns any `CharlstmError` into a one-line message and exit status 2
(after one line for each of its `details`, such as the files that are not
text); anything else is a bug and keeps its traceback.
"""

import os
from collections.abc import Sequence
from pathlib import Path


class CharlstmError(Exception):
    """A problem the user can fix: bad input, bad option, bad checkpoint."""

    # Lines to show before the message, one per item (each file that is not text, say).
    details: tuple[str, ...] = ()


class ConfigError(CharlstmError):
    """An option or stored configuration value is out of range or mistyped."""


class CorpusError(CharlstmError):
    """The training text cannot be read or is unusable."""

    def __init__(self, message: str, details: tuple[str, ...] = ()):
        super().__init__(message)
        self.details = details


class CheckpointError(CharlstmError):
    """A checkpoint is missing, incomplete, foreign or inconsistent."""


def shown(path: str | Path) -> str:
    """A path as short as it can be shown: relative to here when it is below here."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def first_few(items: Sequence[str], limit: int, sep: str = ", ") -> str:
    """The first `limit` of `items`, and how many more there are: "a, b, c, and 4 more"."""
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more
