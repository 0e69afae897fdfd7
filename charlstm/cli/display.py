"""The training display: with `search_display.py` (`charlstm tune`), the one
place that turns loop events into terminal output.

On a terminal it is a live rich progress bar; elsewhere (CI logs, files,
pipes, a terminal that cannot redraw a line: TERM=dumb, Emacs' shell) it
prints plain lines, at most one progress line every few seconds plus one
for every evaluation, save and the end. The corpus being read before is
shown by `reading_display.py`.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.text import Text

from charlstm.cli.format import duration as _duration
from charlstm.cli.format import loss_text as _loss_text
from charlstm.cli.format import training_options
from charlstm.cli.livebar import LiveBar, notice
from charlstm.cli.outputs import animates, on_a_terminal, unseen_if_gone
from charlstm.cli.reading_display import CorpusDisplay
from charlstm.errors import with_escapes
from charlstm.flags import option
from charlstm.training import events
from charlstm.units import fixed, minutes

QUIET, NORMAL, VERBOSE = 0, 1, 2


# The live bar's widths: the bar's own between these, the time left's at
# most (1:02:03), and the statistics' in full (loss, val, |g| and clipping,
# lr, chars/s).
_BAR_MIN, _BAR_MAX, _TIME_WIDTH, _STATS_WIDTH = 5, 40, 7, 70
_AT_MOST = "<="  # before the time left of a run that --patience may end sooner


_MARGIN = "  | "  # before each line of a sample


def sample_line(line: str) -> str:
    """A line of sampled text as the log shows it: control characters by
    their escapes (a corpus of coloured logs would otherwise recolour or
    clear the user's terminal, and a carriage return overwrite the line),
    tabs and everything printable as they are."""
    return with_escapes(line, ("Cc", "Zl", "Zp"), keep="\t")


def _encodable(text: str, encoding: str) -> str:
    """`text` with what `encoding` cannot hold as the escapes stderr writes
    for it, so that lines are wrapped at their width as written (on an ASCII
    terminal each CJK character grew to 6 columns after the wrapping)."""
    try:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: written as it is
        return text


class TrainingDisplay:
    """verbosity: QUIET shows nothing (errors are the CLI's), NORMAL the bar
    or throttled lines plus evaluations, samples and saves, VERBOSE also
    every logged step as a line."""

    def __init__(self, console: Console, verbosity: int = NORMAL, plain_interval: float = 10.0):
        self.console = console
        self.verbosity = verbosity
        self.live = animates(console) and verbosity == NORMAL
        self.plain_interval = plain_interval
        self._last_plain = 0.0
        self._at_most = False  # whether the time left is an upper bound (--patience)
        self._val: float | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._fixed = 0  # the live bar's width besides the bar and its statistics (`_start_bar`)
        self._bar = BarColumn()  # the live bar's, sized to the terminal at each report (`_bar_fits`)
        self._last: events.Progress | None = None
        # The corpus being read, then what the run trains on.
        self._corpus = CorpusDisplay(console, self._say, self.live, verbosity == VERBOSE, plain_interval)
        self._started_at: int | None = None  # the step this session started at
        self._validated = False  # this session made a validation pass
        self._cut_pass: int | None = None  # the step of a pass begun and not (yet) ended
        self._last_pass_line, self._last_pass_said = 0.0, ""  # when a log last said how far a pass was, and what

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        with unseen_if_gone():
            self._corpus.stop()
            if self._progress is not None:
                self._progress.stop()

    def notice(self, line: str) -> bool:
        """Show a signal's `line` ("stopping...") under the live bar, if one is showing."""
        return notice(self._progress, line) or self._corpus.notice(line)

    @property
    def _out(self) -> Console:
        """Where lines go: above the live bar while it shows."""
        return self._progress.console if self._progress is not None else self.console

    def _say(self, message: str, style: str | None = None) -> None:
        # Paths and samples can contain [brackets]: never read messages as markup.
        self._out.print(message, highlight=False, markup=False, style=style)

    def handle(self, event: events.Event) -> None:
        with unseen_if_gone():  # the output's reader may have gone: the run trains on, unseen
            self._handle(event)

    def _handle(self, event: events.Event) -> None:
        if self.verbosity == QUIET:
            return
        if isinstance(event, events.Reading):
            self._corpus.on_reading(event)
            return
        self._corpus.stop()
        if (skipped := events.left_out_line(event)) is not None:
            self._say(skipped, style="yellow")
        elif isinstance(event, events.CorpusReady):
            self._corpus.on_ready(event)
        elif isinstance(event, events.Opened):
            self._on_opened(event)
        elif isinstance(event, events.Started):
            self._on_started(event)
        elif isinstance(event, events.Compiled):
            self._say(f"compiled the training step in {event.seconds:.1f}s")
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, stats="first steps...")  # no longer compiling
        elif isinstance(event, events.Progress):
            self._on_progress(event)
        elif isinstance(event, events.Warned):
            self._say(f"step {event.step}: warning: {event.message}", style="yellow")
        elif isinstance(event, events.Rescheduled):
            self._on_rescheduled(event)
        elif isinstance(event, events.Validating):
            self._cut_pass = event.step
            self._on_validating(event)
        elif isinstance(event, events.Evaluated):
            self._validated, self._cut_pass = True, None
            self._val = event.val_loss
            if self._progress is not None and self._task is not None and self._last is not None:
                self._progress.update(self._task, stats=self._stats(self._last))
            mark = "  new best" if event.best else ""
            self._say(f"step {event.step}: validation loss {_loss_text(event.val_loss)}{mark}")
        elif isinstance(event, events.Sampled):
            self._on_sampled(event)
        elif isinstance(event, events.Saved):
            if not event.best or self.verbosity == VERBOSE:
                self._say(f"step {event.step}: saved {'best ' if event.best else ''}checkpoint {event.path}")
        elif isinstance(event, events.Finished):
            self._on_finished(event)

    def _on_sampled(self, event: events.Sampled) -> None:
        console = self._out
        lines = [
            _encodable(sample_line(line), console.encoding) for line in event.text.replace("\r\n", "\n").split("\n")
        ]
        if on_a_terminal(console):
            # Wrapped here, each piece behind the margin: the terminal's own
            # wrapping would run a long line on at column 0, where it reads
            # as the log's text. (A file gets each line whole.)
            room = max(console.width - len(_MARGIN), 10)
            lines = [str(piece).rstrip() for line in lines for piece in Text(line).wrap(console, room)] or [""]
        self._say(f"step {event.step}: sample\n" + "\n".join(f"{_MARGIN}{line}" for line in lines), "dim")

    def _on_started(self, event: events.Started) -> None:
        self._started_at = event.step
        self._val = event.val_loss  # a resumed run's last pass, until this session's first
        if not event.trains:
            return  # the end says so, and why
        verb = "resuming at step" if event.step else "starting at step"
        where = ", ".join(event.devices) + (f" in {event.processes} processes" if event.processes > 1 else "")
        used, local = len(event.devices), max(event.local_devices, len(event.devices))
        if event.backend == "cpu" and event.processes == 1 and local > 1:
            # Why one CPU shows as several devices (runtime/cpu_devices.py), and
            # where the batch leaves some idle (its streams shared evenly).
            share = "" if used == 1 else f", {'half' if used == 2 else f'1/{used}'} of the streams on each"
            where += (
                f"; the CPU split in {used}{share}"
                if used == local
                else f"; {used} of the CPU's {local} devices{share}"
            )
        self._say(
            f"training on {event.backend} ({where}), {verb} {event.step} of "
            f"{event.total_steps}; {event.train_chars:,} training chars per pass, "
            f"{event.val_chars:,} validation chars"
        )
        if self.live:
            self._start_bar(event.step, event.total_steps)

    def _on_rescheduled(self, event: events.Rescheduled) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=event.steps)
        if event.budget:  # a tune trial's refit, at many reports: its bar shows it
            return
        limit = f"{option('max_seconds')} {minutes(event.max_seconds)}"
        if event.steps > event.was:  # --fill-time
            self._say(
                f"step {event.step}: {limit} holds about {event.steps:,} steps, not {event.was:,}: the run "
                "now fills it, its learning rate decaying fully by then"
            )
            return
        self._say(
            f"step {event.step}: {limit} ends the run near step {event.steps:,} of {event.was:,}: its "
            "learning rate now decays fully by then"
        )

    def _on_finished(self, event: events.Finished) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if event.reason == "done" and event.step == self._started_at and self._validated:
            self._say(
                f"done at step {event.step}: its last validation pass, stopped before, is complete; best "
                f"validation loss {_loss_text(event.best_val_loss)} at step {event.best_step}"
            )
            return
        if event.reason == "done" and event.step == self._started_at:
            self._say(
                f"nothing to train: the run had already finished at step {event.step} (its step total, or where "
                f"its {option('max_seconds')} fitted its schedule to end); give {option('steps')} with a larger total "
                "to train it further"
            )
            return
        if event.reason == "patience" and event.step == self._started_at:
            self._say(
                f"nothing to train: the run had stopped early at step {event.step}, {event.detail}; "
                f"give a larger {option('patience')} to train it further"
            )
            return
        if event.reason == "patience":
            self._say(
                f"stopped early at step {event.step} after {_trained(event)}: "
                f"{event.detail}; best validation loss {_loss_text(event.best_val_loss)} at step "
                f"{event.best_step}, the checkpoint kept as best"
            )
            return
        best = (
            f"best validation loss {_loss_text(event.best_val_loss)}"
            if event.best_val_loss is not None
            else "no validation pass yet"
        )
        if event.best_val_loss is not None and event.best_step is not None:
            best += f" at step {event.best_step}"
        if self._cut_pass is not None and event.reason == "interrupted":  # a resume makes it again
            best += f" (the pass at step {self._cut_pass} was cut short)"
        self._say(f"{event.reason} at step {event.step} after {_trained(event)}; {best}")

    def _on_validating(self, event: events.Validating) -> None:
        """On the live bar, how far the pass is; in a log, for a long pass
        only (so that the wait does not read as a hang), a line as it begins
        and one every few seconds."""
        now = time.monotonic()
        if self._progress is not None and self._task is not None:
            share = f" {event.done:.0%}" if event.done else ""
            # The longest that fits (at 40 columns the whole text pushed the step count and time left out).
            texts = [f"validating on {event.chars:,} characters...{share}", f"validating...{share}", f"val...{share}"]
            stats = next((text for text in texts if self._fitted([text])), "")
            self._progress.update(self._task, stats=stats)
        elif event.large and not event.done:
            self._last_pass_line = now
            self._say(f"step {event.step}: validating on {event.chars:,} characters (Ctrl-C stops it and saves)")
        elif event.large and now - self._last_pass_line >= self.plain_interval:
            line = f"step {event.step}: validating, {event.done:.0%} of {event.chars:,} characters"
            if line != self._last_pass_said:
                self._last_pass_line, self._last_pass_said = now, line
                self._say(line)

    def _start_bar(self, step: int, total: int) -> None:
        # A line too long for the terminal would have Rich squeeze every
        # column, the step count and the time left first: the bar is as wide
        # as the full statistics leave room for, and the statistics keep
        # what fits beside it, the loss first (`_stats`).
        time_width = _TIME_WIDTH + len(_AT_MOST) * self._at_most
        self._fixed = len("train") + 2 * len(str(total)) + 1 + time_width + 4  # and a space between columns
        self._bar = BarColumn(bar_width=self._bar_fits())
        self._progress = LiveBar(
            TextColumn("[bold]train"),
            self._bar,
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            _TimeLeft(self._at_most),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=step, stats="compiling...", ends=None)
        self._progress.start()

    def _stats(self, event: events.Progress) -> str:
        """The step's figures, most wanted first; on the live bar those that
        fit beside it in the terminal's width now."""
        clipped = f" clip {event.clipped_fraction:.0%}" if event.clipped_fraction else ""
        parts = [
            f"loss {fixed(event.loss, 3)}",
            f"val {_loss_text(self._val)}",
            f"|g| {fixed(event.grad_norm, 2)}{clipped}",
        ]
        parts += [f"lr {event.lr:.2e}", f"{event.chars_per_sec / 1000:.1f}k chars/s"]
        if self._progress is None:
            return "  ".join(parts)
        return self._fitted(parts)

    def _bar_fits(self) -> int:
        """The bar's width in the terminal's width now, leaving the full statistics their room."""
        return max(_BAR_MIN, min(_BAR_MAX, self.console.width - self._fixed - _STATS_WIDTH))

    def _fitted(self, parts: list[str]) -> str:
        """As many of `parts`, from the first, as fit beside the bar in the
        terminal's width now: even the first may not, where the step count
        and the time left come first."""
        # The terminal may have been resized since the last report: a bar
        # sized for 120 columns left no room for a figure at 50 (a walkthrough).
        self._bar.bar_width = self._bar_fits()
        room = self.console.width - self._fixed - self._bar.bar_width
        kept: list[str] = []
        for part in parts:
            if len("  ".join([*kept, part])) > room:
                break
            kept.append(part)
        return "  ".join(kept)

    def _on_opened(self, event: events.Opened) -> None:
        # With --patience (a short text's own, say) the run may end well before its last step: the
        # time left to it is then at most what is shown (a walkthrough, 2026-12-06: "eta ~11:26", done in 1:09).
        self._at_most = event.train_config.patience is not None
        if event.shipped_corpus:
            self._say(f"note: no file {Path(event.corpus).name} here; using the shipped corpus {event.corpus}")
        self._say(f"run directory: {event.run_dir}")
        if event.init_from is not None:
            before = int(event.init_from["vocab_size"])
            boundary = event.model_config.boundary_id
            marker = boundary is not None and boundary >= before  # the documents' boundary symbol among the new rows
            new = event.model_config.vocab_size - before - marker
            added = f"; {new:,} new character{'' if new == 1 else 's'} added" if new else ""
            if marker:
                added += ", and the document-boundary symbol" if new else "; the document-boundary symbol added"
            self._say(f"fine-tuning {event.init_from['checkpoint']} (step {event.init_from['step']}){added}")
        if self.verbosity == VERBOSE:
            model = event.model_config
            self._say(f"model: {model.describe()}, embedding {model.embed_dim} ({event.params:,} parameters)")
            self._say(f"training: {', '.join(training_options(event.train_config))}")

    def _on_progress(self, event: events.Progress) -> None:
        self._last = event
        if self._progress is not None and self._task is not None:
            left = _time_left(event)
            ends = None if left is None else time.monotonic() + left
            self._progress.update(self._task, completed=event.step, stats=self._stats(event), ends=ends)
            return
        now = time.monotonic()
        due = now - self._last_plain >= self.plain_interval or self.verbosity == VERBOSE
        if due or event.step == event.total_steps:
            self._last_plain = now
            remaining = _time_left(event)
            if remaining is None:  # no pace yet: the run's, over all its time so far
                remaining = (event.total_steps - event.step) * (event.elapsed / max(event.step, 1))
            self._say(
                f"step {event.step}/{event.total_steps}  {self._stats(event)}  "
                f"elapsed {_duration(event.elapsed)}  eta {_AT_MOST if self._at_most else '~'}{_duration(remaining)}"
            )


def _time_left(event: events.Progress) -> float | None:
    """The time to the run's end at its pace (its passes included), or
    before --max-time stops it, whichever comes first; None if neither is known."""
    known = [t for t in (event.time_to_end, event.time_left) if t is not None]
    return min(known) if known else None


class _TimeLeft(ProgressColumn):
    """The time left as of the last report (the task's `ends`, counted down
    between reports), or until one says, Rich's estimate from the bar's speed."""

    def __init__(self, at_most: bool = False) -> None:
        super().__init__()
        self.at_most = at_most

    def render(self, task: Task) -> Text:
        ends = task.fields.get("ends")
        left = task.time_remaining if ends is None else max(0.0, ends - time.monotonic())
        shown = "-:--" if left is None else _AT_MOST * self.at_most + _duration(left)
        return Text(shown, style="progress.remaining")


def _trained(event: events.Finished) -> str:
    """How long the run trained; after a resume, this session's share first."""
    total = _duration(event.train_seconds)
    session = event.train_seconds - event.earlier_seconds
    # A large held-out text can make its passes most of a session: say so, or
    # the steps read as slow. After a time limit, what came after it (the last
    # pass and save) too, or "0:18 of training" reads as a limit of 0:15 overrun.
    other = session - event.step_seconds
    known = event.step_seconds > 0
    worth_saying = other > max(5.0, session / 5) or (event.reason == "time limit" and other >= 1.0)
    passes = f", {_duration(other)} of it validation passes and saves" if known and worth_saying else ""
    if event.earlier_seconds <= 0:
        return f"{total} of training{passes}"
    return f"{_duration(session)} of training{passes} ({total} in all)"
