"""A live bar that can show a signal's line beneath it.

A signal handler that writes "stopping..." straight to the terminal leaves
a stale copy of the bar above it and a fresh one below (a walkthrough,
2026-12-06): the bar redraws itself where its cursor was. So the handler
only hands the line over (`notice`), and the bar's own refresh draws it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.progress import Progress
from rich.text import Text


class LiveBar(Progress):
    """A rich progress bar with the lines handed to it (`notice`) beneath:
    the handler only appends to a list, the bar's refresh (ten times a
    second) draws them, and they stay when it ends."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.notices: list[str] = []  # before Progress's own start, which renders
        super().__init__(*args, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        yield from (Text(line) for line in list(self.notices))

    def stop(self) -> None:
        super().stop()
        if self.live.transient:  # gone with the bar: said again, for good
            for line in self.notices:
                self.console.print(line, highlight=False, markup=False)


def notice(bar: Progress | None, line: str) -> bool:
    """Show `line` under `bar` if it is a live bar running; whether it did."""
    if not isinstance(bar, LiveBar) or not bar.live.is_started:
        return False
    bar.notices.append(line)
    return True
