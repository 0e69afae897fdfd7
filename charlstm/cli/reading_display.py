"""What a command shows while it reads text: the corpus being hashed,
checked and encoded before training, the corpus it will train on, and the
share of a text scored (`scoring_bar`, for `charlstm eval` and `inspect`).

On a terminal, transient bars; elsewhere, a line every few seconds once a
phase has taken that long. `display.py`'s TrainingDisplay hands the corpus
events here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from charlstm.cli.format import size, skipped_text
from charlstm.cli.livebar import LiveBar, notice
from charlstm.cli.outputs import animates
from charlstm.errors import shown
from charlstm.training import events

# A corpus this large is worth a line saying where its token file is, and how long it took.
LARGE_CORPUS = 64 << 20
_PHASES = {"hashing": "hashing corpus", "reading": "checking corpus", "encoding": "encoding corpus"}


class CorpusDisplay:
    """The corpus a run reads: a bar (`live`) or lines for each phase of
    the reading, then what it will train on. `say` prints a line (above a
    live training bar, where there is one); `detailed`: the corpus line
    even for one small file."""

    def __init__(self, console: Console, say: Callable[..., None], live: bool, detailed: bool, plain_interval: float):
        self.console, self._say, self.live, self.detailed = console, say, live, detailed
        self.plain_interval = plain_interval
        self._reading: tuple[str, Progress | None, TaskID | None, float] | None = None  # phase, bar, task, start
        self._last_line = 0.0

    def on_reading(self, event: events.Reading) -> None:
        """A transient bar of bytes on a terminal; elsewhere a line every few
        seconds, once a phase has taken that long."""
        now = time.monotonic()
        if self._reading is None or self._reading[0] != event.phase:
            self.stop()
            bar: Progress | None = None
            task = None
            if self.live:
                bar = LiveBar(
                    TextColumn(f"[bold]{_PHASES.get(event.phase, event.phase)}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
                )  # fmt: skip
                task = bar.add_task(event.phase, total=event.total)
                bar.start()
            self._reading = (event.phase, bar, task, now)
            self._last_line = now
        _, bar, task, started = self._reading
        if bar is not None and task is not None:
            bar.update(task, completed=event.done)
        elif 0 < event.done < event.total and now - self._last_line >= self.plain_interval:
            self._last_line = now
            rate = event.done / max(now - started, 1e-9)
            self._say(
                f"{_PHASES.get(event.phase, event.phase)}: {event.done / event.total:.0%} of {size(event.total)} "
                f"({size(rate)}/s)"
            )

    def notice(self, line: str) -> bool:
        """Show a signal's `line` ("stopping...") under the reading's bar, if one is showing."""
        return self._reading is not None and notice(self._reading[1], line)

    def stop(self) -> None:
        """End the reading's bar, if one is shown: the reading is over."""
        if self._reading is not None and self._reading[1] is not None:
            self._reading[1].stop()
        self._reading = None

    def on_ready(self, event: events.CorpusReady) -> None:
        several = event.files + event.val_files > 1
        if several or event.size >= LARGE_CORPUS or self.detailed:
            self._corpus_line(event)
        if event.skipped:
            self._say(
                f"note: {sum(event.skipped.values()):,} characters of the validation text skipped (not in "
                f"vocabulary): {skipped_text(event.skipped)}; the validation loss leaves them out",
                style="yellow",
            )

    def _corpus_line(self, event: events.CorpusReady) -> None:
        sources = ", ".join(shown(source) for source in event.sources or (event.path,))
        what = f"{event.files} files from {sources}" if event.files > 1 else shown(event.path)
        # The vocabulary is the training text's: --val-file text is sized apart.
        val = f" ({size(event.val_size)}, {event.val_chars:,} characters)" if event.val_files else ""
        # Counted as info counts it: the boundary is a symbol of the vocabulary, not a character.
        vocab = f"{event.vocab_size - event.boundary} in the vocabulary" + (
            ", and the document boundary" if event.boundary else ""
        )
        self._say(
            f"corpus: {what}, {size(event.size)}, {event.chars:,} characters ({vocab}); "
            f"validation text: {event.validation}{val}"
        )
        if event.encoded_seconds is not None:
            rate = (event.size + event.val_size) / max(event.encoded_seconds, 1e-9)  # both were encoded
            self._say(f"encoded in {event.encoded_seconds:.1f}s ({size(rate)}/s) to {event.tokens}")
        else:
            self._say(f"token file (from the cache): {event.tokens}")


# Off a terminal, how often a long scoring says how far it is, as training's log does.
PLAIN_SCORING_SECONDS = 10.0


@contextmanager
def scoring_bar(console: Console, what: str, quiet: bool = False) -> Iterator[Callable[[float], None]]:
    """A transient bar of the share of a text scored (the callback takes
    it, 0 to 1), on a terminal and not `quiet`; elsewhere, where it lasts,
    a line every PLAIN_SCORING_SECONDS (a 12 MB text was minutes of
    silence in a log, a walkthrough found, 2026-12-05)."""
    if quiet:
        yield lambda share: None
        return
    if not animates(console):
        last = [time.monotonic()]

        def plain(share: float) -> None:
            now = time.monotonic()
            if 0 < share < 1 and now - last[0] >= PLAIN_SCORING_SECONDS:
                last[0] = now
                console.print(f"{what}: {share:.0%}", highlight=False, markup=False)

        yield plain
        return
    bar = Progress(
        TextColumn(f"[bold]{what}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )  # fmt: skip
    task = bar.add_task(what, total=1.0)
    with bar:
        yield lambda share: bar.update(task, completed=share)
