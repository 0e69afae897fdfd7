"""Ctrl-C and SIGTERM during training or a search: stop cleanly, then save."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop at the next step boundary and
    save, so the checkpoint it then writes is never cut off half-way. A second
    signal says so; a third aborts at once, without that save (the earlier
    checkpoints survive: saves are atomic). Call it to ask whether to stop."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.count = 0

    def __call__(self) -> bool:
        return self.signal is not None

    @property
    def exit_status(self) -> int:
        """128 + the signal: SIGTERM also when another process of a
        multi-process run was the one signalled."""
        return EXIT_SIGINT if self.signal == signal.SIGINT else EXIT_SIGTERM

    @contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            self.count += 1
            if self.signal is None:
                self.signal = signum
            elif self.count == 2:
                # os.write, not print: a handler may interrupt a print in progress.
                # A closed stderr must not raise here, in the middle of a step.
                with contextlib.suppress(OSError):
                    os.write(2, b"stopping after the checkpoint is saved; signal once more to abort without it\n")
            else:
                raise KeyboardInterrupt

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
