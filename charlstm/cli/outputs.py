"""When the reader of the command's output goes away.

`charlstm train ... | head -3` exits `head` after three lines, and the
`tee` of `charlstm train ... | tee log` dies with the terminal's Ctrl-C:
every later write then fails with a broken pipe. A run being trained must
not be lost to that (it used to end the run with status 1, before its
first checkpoint), so the places that write catch it and call
`outputs_gone`, and the command carries on with nothing more shown. A
command whose output is its result (`sample | head`) ends there, with
status 141 as a shell reports a command its reader left (`app.py`).
An output that cannot take what is written (a full disk, `2>/dev/full`)
is dropped the same way; and one closed before the command started
(`>&-`) is /dev/null from the start, except that a result written to a
closed stdout is refused as a full one is.
"""

from __future__ import annotations

import errno
import io
import os
import select
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console

# A write's errors that mean the output will take nothing more: a full disk
# (or /dev/full), a quota, a file grown past its limit (FULL: a write's
# alone); or an I/O error.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
UNWRITABLE = FULL | {errno.EIO}


_CLOSED: set[str] = set()  # the standard streams closed before the command started


def closed_streams_to_devnull() -> None:
    """A standard stream closed before the command started (`charlstm train
    ... >&-`, a daemon's closed descriptors): Python made it None, and the
    first file opened would take its descriptor, a checkpoint's say, for
    stray writes to land in. Each such descriptor is /dev/null instead, and
    so is its stream: the command runs, unseen there."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            _CLOSED.add(name)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", closefd=False))  # noqa: SIM115 (the process's own)


class ResultUnwritable(OSError):
    """stdout refused a write (`UNWRITABLE`): told apart from the same errors
    of stderr, and of a run's own files, which are not the command's output."""


class _ResultStream(io.TextIOWrapper):
    """stdout, whose refused writes are `ResultUnwritable`.
    `closed_at_start`: it was closed before the command started (`sample
    >&-`), and the first text written is refused, as `cat >&-` refuses it,
    instead of going to /dev/null with status 0; what follows goes there
    (a run trains on)."""

    closed_at_start = False

    def write(self, text: str) -> int:
        if self.closed_at_start and text:
            self.closed_at_start = False
            raise ResultUnwritable(errno.EBADF, "stdout is closed")
        try:
            return super().write(text)
        except OSError as err:
            raise _told_apart(err) from None

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as err:
            raise _told_apart(err) from None


def _told_apart(err: OSError) -> OSError:
    return ResultUnwritable(err.errno, err.strerror) if err.errno in UNWRITABLE else err


_REPLACED: list[TextIO] = []


def result_stdout() -> None:
    """stdout as `_ResultStream`. Under `python -u` or PYTHONUNBUFFERED=1
    stdout writes straight to its file descriptor, and Python's text layer
    drops what a pipe did not take without an error: `sample | head -c 20`
    ended with 0, its text cut short unseen. A buffered writer under it
    there writes the rest too, and the second write raises BrokenPipeError
    (status 141, as without -u); lines still reach a terminal as they are
    written. The stream it replaces is kept, unused: it would close the
    buffer they share as it is collected."""
    out = sys.stdout
    if not isinstance(out, io.TextIOWrapper):
        return
    _REPLACED.append(out)
    buffer, line_buffering = out.buffer, out.line_buffering
    if isinstance(buffer, io.RawIOBase):
        buffer, line_buffering = io.BufferedWriter(buffer), True
    # newline="": the text as generated, no \r added before each \n on Windows (a CRLF text's \r\n became \r\r\n).
    stream = _ResultStream(buffer, encoding=out.encoding, errors=out.errors, newline="", line_buffering=line_buffering)
    stream.closed_at_start = "stdout" in _CLOSED
    sys.stdout = stream


def unwritable_to_devnull(stream: TextIO) -> None:
    """Send what is still written to `stream` (one that refused a write,
    `UNWRITABLE`) to /dev/null: the command carries on unseen there."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # no descriptor (a test's captured stream)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def outputs_gone() -> None:
    """Where the reader of stdout or stderr has gone (`| head` exited, the
    `tee` of `| tee log` was interrupted), send what is still written there
    to /dev/null: the command then carries on instead of failing at its
    next line, and a run being trained is never lost to a closed pipe."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            if not hasattr(select, "poll"):  # Windows: which one went cannot be asked, so both go quiet
                gone = True
            else:
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
                gone = any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
        except (OSError, ValueError):  # no descriptor (a test's captured stream)
            continue
        if gone:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)


@contextmanager
def unseen_if_gone() -> Iterator[None]:
    """Writes that, where the output's reader has gone, are dropped and the
    command goes on (a run's display and messages: the run trains on)."""
    try:
        yield
    except BrokenPipeError:
        outputs_gone()
    except ResultUnwritable:
        unwritable_to_devnull(sys.stdout)
    except OSError as err:  # what these blocks write besides stdout is stderr
        if err.errno not in UNWRITABLE:
            raise
        unwritable_to_devnull(sys.stderr)


class Terminal(Console):
    """Rich's console, except where its reader has gone: Rich then exits
    the process with status 1 (the status of a diverged run); this one
    raises BrokenPipeError, after `outputs_gone`, for the caller to decide.

    Nothing printed is read as Rich markup or emoji codes: file and run
    names, and sampled text, may hold `[/x]` (which Rich would refuse with
    a traceback, or take as a style) or `:fire:` (which it would draw as
    an emoji). A progress bar's own columns still take markup."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        super().__init__(*args, **kwargs)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        outputs_gone()
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def on_a_terminal(console: Console) -> bool:
    """Whether `console` writes to a terminal. Rich's `is_terminal` is true
    wherever the environment forces colour (FORCE_COLOR, common in CI), which
    asks for colour in a log, not a bar redrawn into it 8 times a second nor
    tables cut to 80 columns (a walkthrough, 2026-12-06); a console made
    with `force_terminal` (the tests' stand-in terminals) is taken at its word."""
    if not console.is_terminal:
        return False
    if console._force_terminal is not None:  # given to the constructor; rich 14 on keeps the environment's apart
        return True
    if os.environ.get("TTY_COMPATIBLE") == "1":  # rich's way to say "this is a terminal", taken at its word too
        return True
    try:
        return console.file.isatty()
    except (AttributeError, OSError, ValueError):  # closed, or no descriptor
        return False


def animates(console: Console) -> bool:
    """Whether `console` can show a live bar: a terminal that can move its
    cursor (on a dumb one Rich draws a bar only when it ends)."""
    return on_a_terminal(console) and not console.is_dumb_terminal
