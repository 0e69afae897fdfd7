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


def fixed(x: float, digits: int) -> str:
    """x to `digits` decimals, or to three figures from 100,000 up: a run far
    off course (--lr 1e30) reached a loss of 9e30, written out in 34 digits
    that stretched every column of `charlstm runs` (a walkthrough, 2026-12-06)."""
    return f"{x:.3g}" if abs(x) >= 1e5 else f"{x:.{digits}f}"
