"""Ctrl-C and SIGTERM: during training or a search, stop cleanly, then save
(`StopFlag`, which takes SIGHUP too: a dropped SSH session or a closed
terminal); in every other command, stop at once (`Interrupt`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# Windows has no SIGHUP (nor SIGPIPE): looked up where the name may be
# missing, or every command failed as the CLI was imported (an audit, 2026-12-06).
SIGHUP: int | None = getattr(signal, "SIGHUP", None)
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
EXIT_SIGHUP = 128 + 1  # POSIX's SIGHUP


def taken_signals() -> list[int]:
    """The signals a training command stops on: SIGINT, SIGTERM and SIGHUP
    (on Windows SIGBREAK, Ctrl-Break, instead), less those this process was
    started with ignored (`nohup`; a script's background job, for SIGINT),
    which stay ignored."""
    wanted = [signal.SIGINT, signal.SIGTERM, SIGHUP if SIGHUP is not None else getattr(signal, "SIGBREAK", None)]
    return [sig for sig in wanted if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN]


class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop at the next step boundary and
    save, so the checkpoint it then writes is never cut off half-way. A second
    signal says so; a third aborts at once, without that save (the earlier
    checkpoints survive: saves are atomic). Call it to ask whether to stop."""

    def __init__(self, quiet: bool = False) -> None:
        self.signal: int | None = None
        self.count = 0
        self.quiet = quiet  # -q, or a process that does not report: the signals are heeded in silence
        # The live display's way to show a line under its bar, where one shows
        # (it says whether it did): a line written past it leaves a stale bar.
        self.shown_by: Callable[[str], bool] | None = None
        self._wakeup: socket.socket | None = None  # the read end of the signals' wakeup socket, while installed
        self._taken: tuple[int, ...] = ()

    def __call__(self) -> bool:
        return self.signal is not None

    @property
    def exit_status(self) -> int:
        """128 + the signal: SIGTERM also when another process of a
        multi-process run was the one signalled."""
        if self.signal == signal.SIGINT:
            return EXIT_SIGINT
        return EXIT_SIGHUP if self.signal is not None and self.signal == SIGHUP else EXIT_SIGTERM

    @contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            # Python runs this once for however many signals came while the
            # main thread was inside a step (compiled code runs no handler);
            # the wakeup pipe holds a byte for each, so three quick Ctrl-Cs count as three.
            before, self.count = self.count, self.count + self._arrived()
            if self.signal is None:
                self.signal = signum
            if self.count >= 3:
                raise KeyboardInterrupt
            if before == 0:
                # Say so at once: silence while the step or a save finishes invites the third
                # signal, which aborts without the save.
                self._say("stopping...", b"\n")
            if self.count == 2:
                self._say("stopping after the checkpoint is saved; signal once more to abort without it")

        # The main thread's only. A signal left ignored where it was (a hangup under `nohup`, an
        # interrupt for a script's background job) stays ignored: someone chose that, as Python
        # itself respects for SIGINT.
        stoppers = taken_signals()
        previous = {s: signal.signal(s, handler) for s in stoppers}
        # A socket pair, not a pipe: Windows takes only a socket as the wakeup
        # descriptor, and Python 3.11 cannot make a pipe non-blocking there.
        read_end, write_end = socket.socketpair()
        try:
            for end in (read_end, write_end):
                end.setblocking(False)  # a full buffer drops a byte rather than block the signal
            previous_fd = signal.set_wakeup_fd(write_end.fileno(), warn_on_full_buffer=False)
            outer, self._wakeup, self._taken = self._wakeup, read_end, tuple(stoppers)
            try:
                yield
            finally:
                signal.set_wakeup_fd(previous_fd)
                self._wakeup = outer
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            read_end.close()
            write_end.close()

    def _arrived(self) -> int:
        """The stopping signals (`taken_signals`) delivered since the last
        call: at least the one being handled."""
        count = 0
        while self._wakeup is not None:
            try:
                got = self._wakeup.recv(512)
            except (BlockingIOError, InterruptedError):
                break
            if not got:
                break
            count += sum(byte in self._taken for byte in got)
        return max(1, count)

    def _say(self, line: str, before: bytes = b"") -> None:
        # Under the live bar, by the display's own refresh; elsewhere
        # os.write, not print: a handler may interrupt a print in progress.
        # A closed stderr must not raise here, in the middle of a step.
        if self.quiet or (self.shown_by is not None and self.shown_by(line)):
            return
        with contextlib.suppress(OSError):
            os.write(2, before + line.encode() + b"\n")


class Interrupt:
    """The SIGINT handler of every command but those that save first (they
    install a StopFlag over it): a KeyboardInterrupt, as Python's own
    handler raises, then the process ends with 130 at the latest
    `GRACE_S` later, or at once on a second Ctrl-C.

    While a module loads, it ends the process at once instead. Why not
    Python's own handler: a KeyboardInterrupt raised while a garbage
    collection runs JAX's callback is dropped by the interpreter, with an
    "Exception ignored" traceback (seen in 7 of 54 Ctrl-Cs while JAX loads:
    each time the command went on to its end and exited 0); that one ends
    the process at once, others the timer ends. And being a handler of its
    own, asyncio's runners leave it in place instead of turning it into a
    cancelled task. Call it to ask whether a Ctrl-C came."""

    GRACE_S = 3.0

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> bool:
        return self.count > 0

    def install(self) -> None:
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a background job of a script: left ignored
            return
        signal.signal(signal.SIGINT, self._handle)
        previous = sys.unraisablehook

        def dropped(unraisable: Any) -> None:
            if isinstance(unraisable.exc_value, KeyboardInterrupt) and self():
                end_now(EXIT_SIGINT)
            previous(unraisable)

        sys.unraisablehook = dropped

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1 or _importing(frame):
            # A KeyboardInterrupt in the middle of loading JAX or NumPy cuts
            # off a C extension's start: NumPy prints its own traceback, a
            # later import aborts (status 134) or crashes. An import leaves
            # nothing half-written to clean up.
            end_now(EXIT_SIGINT)
        timer = threading.Timer(self.GRACE_S, end_now, args=(EXIT_SIGINT,))
        timer.daemon = True
        timer.start()
        raise KeyboardInterrupt


def _importing(frame: Any) -> bool:
    """Whether the interrupted thread is loading a module."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def late_signals(ignored: bool) -> None:
    """What a Ctrl-C or SIGTERM does from here to the process's end (JAX's
    and Orbax's shutdown, a few tenths of a second), once a command has
    said how it ended. `ignored` after one that did its work: its status
    stays the command's (one made a finished run exit 130); ignored rather
    than handled, as Python drops its own handlers before its last shutdown
    steps. Otherwise the signal's default, which ends the process at once
    (a shutdown that hangs can be ended). A signal ignored from the start
    stays so."""
    disposition = signal.SIG_IGN if ignored else signal.SIG_DFL
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, disposition)


def end_now(status: int) -> None:
    """End the process with `status` without Python's exit, after flushing what was written."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
