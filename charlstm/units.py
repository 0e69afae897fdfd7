"""Losses are kept in nats per character; people also read bits per character. Times are kept
in seconds; `--max-time` takes minutes."""

from __future__ import annotations

import math

from charlstm.flags import flag, on_the_command_line

LN2 = math.log(2.0)


def minutes(seconds: float) -> str:
    """`seconds` as the minutes `--max-time` takes, as a user would type
    them: 0.0833, not 0.0833333; 1440, not 1.44e+03."""
    return f"{round(seconds / 60, 4):g}"


def time_limit(seconds: float) -> str:
    """A time limit as its reader gives it: `--max-time 5` (minutes) on the
    command line, `max_seconds 300` for a Python caller (`flags.flag`)."""
    return f"{flag('max_seconds')} {minutes(seconds) if on_the_command_line() else f'{seconds:g}'}"


def bits(nats: float) -> float:
    """A loss in nats per character as bits per character."""
    return nats / LN2
