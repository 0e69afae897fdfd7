"""The one exception family the library raises for a user's mistake, and
how paths and characters are shown in what users are told.

The CLI turns any `CharlstmError` into a one-line message and exit status 2
(after one line for each of its `details`, such as the files that are not
text); anything else is a bug and keeps its traceback.
"""

import os
import shlex
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path


class CharlstmError(Exception):
    """A problem the user can fix: bad input, bad option, bad checkpoint."""

    # Lines to show before the message, one per item (each file that is not text, say).
    details: tuple[str, ...] = ()


class CharlstmWarning(UserWarning):
    """What a run tells a Python caller who passed no `on_event`: its health
    warnings and the files it left out (the command line shows them as it
    trains)."""


class LateSplitWarning(CharlstmWarning, RuntimeWarning):
    """`split_the_cpu()` called after JAX started: a charlstm warning (one
    filter silences all of them), and the RuntimeWarning it always was."""


class ConfigError(CharlstmError):
    """An option or stored configuration value is out of range or mistyped."""


class CorpusError(CharlstmError):
    """The training text cannot be read or is unusable."""

    def __init__(self, message: str, details: tuple[str, ...] = ()):
        super().__init__(message)
        self.details = details


class CheckpointError(CharlstmError):
    """A checkpoint is missing, incomplete, foreign or inconsistent."""


def with_escapes(text: str, categories: Collection[str], keep: str = "") -> str:
    """`text` with its characters of these Unicode categories (but those in
    `keep`) written as their escapes ('\\x1b', '\\u2028'): text for a line
    of a terminal that must not recolour, split or reverse it."""
    return "".join(
        c.encode("unicode_escape").decode("ascii") if c not in keep and unicodedata.category(c) in categories else c
        for c in text
    )


# What a terminal must show as escapes, not obey: control and format
# characters (escape sequences, bidi overrides), line and paragraph
# separators, and lone surrogates (a name's bytes that are not UTF-8).
NOT_OBEYED = ("Cc", "Cf", "Zl", "Zp", "Cs")


def as_text(text: str, keep: str = "") -> str:
    """`text` with NOT_OBEYED's characters (but those in `keep`) as escapes:
    names, paths and messages from files and a run's metadata, which a
    stranger's run can fill with escape sequences (a walkthrough,
    2026-12-06), and a name holding U+2028 would split its row."""
    return with_escapes(text, NOT_OBEYED, keep)


def shown(path: str | Path) -> str:
    """A path as short as it can be shown: relative to here when it is below here."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def shell_word(path: str | Path) -> str:
    """A path as a shell and a command read it back, in a command to copy:
    quoted where it has a space, and `./-name` where it starts with a dash,
    which the command would read as an option."""
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def first_few(items: Sequence[str], limit: int, sep: str = ", ") -> str:
    """The first `limit` of `items`, and how many more there are: "a, b, c, and 4 more"."""
    more = f", and {len(items) - limit:,} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def named_char(c: str) -> str:
    """One character as a message shows it: as typed where it can be seen
    on its own ('é', '\\'), else by its escape: a tab, a no-break space, a
    lone surrogate, and a combining mark, which would sit on the quote
    before it ('\\u0301')."""
    if unicodedata.category(c).startswith("M"):
        return f"'{c.encode('unicode_escape').decode('ascii')}'"
    return f"'{c}'" if c.isprintable() and c != "'" else repr(c)


# Characters a message names one by one: a text of thousands of unknown
# characters (another script) would otherwise make a message of thousands.
NAMED_CHARS = 30


def named(chars: Iterable[str]) -> str:
    """Characters listed one by one, each as `named_char` shows it: the
    first NAMED_CHARS, and how many more there are."""
    return first_few([named_char(c) for c in chars], NAMED_CHARS)
