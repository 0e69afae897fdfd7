"""`charlstm tune`'s live display: a line as each trial starts and ends and,
on a terminal, a transient bar for the trial's steps (`charlstm train`'s
display, `display.py`, shows each trial whole with -v)."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from charlstm.cli.display import NORMAL, QUIET, VERBOSE, TrainingDisplay
from charlstm.cli.format import loss_text, param_count, trial_seconds
from charlstm.cli.livebar import LiveBar, notice
from charlstm.cli.outputs import animates, unseen_if_gone
from charlstm.flags import as_options
from charlstm.training import events
from charlstm.training.tune import SHORT_TRIAL
from charlstm.units import fixed


class SearchDisplay:
    """`charlstm tune`: a line as each trial starts and ends; in between, on a
    terminal, a transient bar for the trial's steps. VERBOSE shows each trial
    as `charlstm train` would (evaluations, samples, saves)."""

    def __init__(self, console: Console, verbosity: int = NORMAL):
        self.console = console
        self.verbosity = verbosity
        self._trial: TrainingDisplay | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> SearchDisplay:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        with unseen_if_gone():
            self._stop_bar()

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def notice(self, line: str) -> bool:
        """Show a signal's `line` ("stopping...") under the live bar, if one is showing."""
        if self._trial is not None:
            return self._trial.notice(line)
        return notice(self._progress, line)

    def _say(self, message: str, style: str | None = None) -> None:
        self.console.print(message, highlight=False, markup=False, style=style)

    def handle(self, event: Any) -> None:
        with unseen_if_gone():  # the output's reader may have gone: the search goes on, unseen
            self._handle(event)

    def _handle(self, event: Any) -> None:
        if self.verbosity == QUIET:
            return
        if (skipped := events.left_out_line(event)) is not None:
            self._say(skipped, style="yellow")
        elif isinstance(event, events.SearchPlanned):
            plural = "" if event.trials == 1 else "s"
            self._say(f"search directory: {event.directory}; {event.trials} {event.kind} trial{plural}")
            if event.note:
                self._say(f"note: {event.note}", style="yellow")
        elif isinstance(event, events.TrialStarted):
            self._say(
                f"{event.name} ({event.index + 1} of {event.total}): {as_options(event.point)}  "
                f"({param_count(event.params)} parameters, {_steps(event)})"
            )
            if self.verbosity == VERBOSE:
                self._trial = TrainingDisplay(self.console, NORMAL)
            elif animates(self.console):
                self._progress = LiveBar(
                    TextColumn("  "), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                    console=self.console, transient=True,
                )  # fmt: skip
                self._task = self._progress.add_task("trial", total=event.steps, stats="compiling...")
                self._progress.start()
        elif isinstance(event, events.TrialFinished):
            self._stop_bar()
            self._trial = None
            r = event.result
            self._say(
                f"{Path(r.run_dir).name} ({event.index + 1} of {event.total}): {r.reason} at step {r.steps} after "
                f"{trial_seconds(r.train_seconds)} of training steps; best validation loss {loss_text(r.val_loss)}"
            )
        elif self._trial is not None:
            self._trial.handle(event)
        elif isinstance(event, events.Rescheduled) and self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=event.steps)  # a time budget's refitted end
        elif isinstance(event, events.Progress) and self._progress is not None and self._task is not None:
            stats = f"loss {fixed(event.loss, 3)}  {event.chars_per_sec / 1000:.1f}k chars/s"
            self._progress.update(self._task, completed=event.step, stats=stats)


def _steps(event: events.TrialStarted) -> str:
    """A trial's steps: those asked for, or about those its time budget holds (refitted as it runs)."""
    steps = f"{event.steps:,} step{'' if event.steps == 1 else 's'}"
    if event.budget_s is None:
        return steps
    if event.steps < SHORT_TRIAL:  # docs/tune.md: its first refit would come too late to matter
        return f"about {steps} in its {event.budget_s:g} s, too few to refit: its schedule ends there"
    return f"about {steps} in its {event.budget_s:g} s, refitted as it runs"
