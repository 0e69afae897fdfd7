"""Running `charlstm train` or `charlstm resume` once its options are read:
the signal handlers, joining a multi-process run before JAX touches a
device, the live display, and how the run ended in words and an exit status.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from charlstm.cli.app import (
    EXIT_ABORTED,
    EXIT_DIVERGED,
    EXIT_USAGE,
    end_at_once,
    finished,
    say,
    say_error,
    stderr,
    use_cache,
    user_errors,
)
from charlstm.cli.display import QUIET
from charlstm.cli.signals import StopFlag, end_now, taken_signals
from charlstm.errors import CharlstmError, CheckpointError, shell_word
from charlstm.flags import option
from charlstm.units import minutes

if TYPE_CHECKING:
    from charlstm.api import Model, TrainingDiverged


def start(
    level: int,
    layout: tuple[str | None, int | None, int | None, int | None],
    begin: Callable[[Any, _Watch, StopFlag], Model],
) -> None:
    """What `train` and `resume` share: import the API with the signal
    handlers in place (a Ctrl-C while JAX is imported is not lost), join a
    multi-process run without them, then train (`begin(api, watch, stop)`)
    with them. `layout`: the coordinator, process count, process id and
    devices asked for."""
    # Under -q a Ctrl-C is still answered on a terminal (the user is there,
    # and silence invites the third one, which loses the save), not in a log.
    quiet = level == QUIET and not sys.stderr.isatty()
    stop = StopFlag(quiet=quiet)
    with user_errors():
        with stop.installed():
            from charlstm import api
        level = _join(stop, *layout, level)
        from charlstm.training import processes

        stop.quiet = quiet or not processes.is_main()  # only the first process of several says so
        with stop.installed():
            use_cache()
            _watch_training(level, stop, lambda watch: begin(api, watch, stop))
        finished()  # the run has ended and said so (a stop or a failure raised above)


def _join(
    stop: StopFlag,
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    devices: int | None,
    level: int,
) -> int:
    """Join a multi-process run if one is asked for or detected, and make
    devices of the CPU (both before anything touches JAX's devices); the
    verbosity this process reports with: only process 0 reports. A signal
    that came while starting up ends the process here, before it joins; one
    that comes while it waits for the others (in C++, where no Python
    handler runs) ends it at once, as the signal's default does."""
    from charlstm.runtime.cpu_devices import split_the_cpu
    from charlstm.training import processes

    if stop():
        say("interrupted before training began; nothing was written")
        raise typer.Exit(stop.exit_status)
    # One process splits the CPU unless told otherwise; the processes of a
    # run on several keep one CPU device each unless --devices says more.
    processes.check_layout(coordinator, num_processes, process_id)  # before the wait below
    processes.refuse_a_port_in_use(coordinator, process_id, num_processes)
    at = processes.joining_where(coordinator, num_processes, process_id)
    if level > 0 and at is not None:
        say(
            f"joining a run of {num_processes or 'several'} processes {at}: "
            f"waiting for the others (up to {processes.join_timeout():g} s)"
        )
    # JAX waits for the others in C++, where no Python handler runs: a
    # signal meanwhile ends the process as its default does.
    handlers = {sig: signal.signal(sig, signal.SIG_DFL) for sig in taken_signals()}  # as StopFlag takes them
    try:
        joined = processes.initialize(coordinator, num_processes, process_id, on_timeout=_gave_up_joining)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if joined:
        processes.quiet_about_lost_processes()
    if not joined or devices is not None:
        split_the_cpu(devices)
    processes.check_devices(num_processes)  # every process at once, before any other collective
    return level if processes.is_main() else 0


def _gave_up_joining(message: str) -> None:
    """The processes never all joined: say so and end, before JAX aborts
    with a C++ stack trace. Called from a timer's thread while the main
    thread waits inside JAX, where no exception reaches it: so `os._exit`,
    even in-process."""
    say(f"error: {message}")
    end_now(EXIT_ABORTED)


class _Watch:
    """Passes the run's events to the display, noting where the run lives and whether it has ended."""

    def __init__(self, handle: Callable[[Any], None]):
        self.handle = handle
        self.run_dir: Path | None = None
        self.reason: str | None = None  # how the run ended (events.Finished), once it has

    def __call__(self, event: Any) -> None:
        from charlstm.training import events

        if isinstance(event, events.Opened):
            self.run_dir = event.run_dir
        elif isinstance(event, events.Finished):
            self.reason = event.reason
        self.handle(event)


def _watch_training(level: int, stop: StopFlag, start: Callable[[_Watch], Model]) -> None:
    """Train (a new or resumed run, as `start` says) with the display in
    place and `stop`'s signal handlers installed, then say how it ended."""
    from charlstm.api import TrainingDiverged
    from charlstm.cli.display import TrainingDisplay
    from charlstm.training import processes

    display = TrainingDisplay(stderr(), level)
    stop.shown_by = display.notice
    watch = _Watch(display.handle)
    try:
        with display:
            model = start(watch)
    except KeyboardInterrupt:
        if watch.reason == "interrupted":  # it had saved on the first signal; reading it back was cut short
            say(f"interrupted; checkpoint saved. {_continue_with(watch.run_dir)}")
            raise typer.Exit(stop.exit_status) from None
        if watch.reason is not None:  # the run had saved and ended; only reading its best checkpoint back was cut short
            say(f"interrupted after the run ended; its checkpoints are complete: {watch.run_dir}")
            raise typer.Exit(stop.exit_status) from None
        say(f"aborted without saving; {_what_is_left(watch.run_dir)}")
        end_at_once(EXIT_ABORTED)
    except TrainingDiverged as diverged:
        if processes.is_main():  # the processes agree on how it ended; one says so
            say(f"error: {_diverged_advice(diverged)}")
        processes.leave()
        raise typer.Exit(EXIT_DIVERGED) from None
    except CharlstmError as err:
        if not processes.joined():
            raise
        # A save cut short by a partner that died (a walkthrough, 2026-12-06): judged by the error the save
        # met, not by this message, which holds the user's paths (a corpus named igloo.txt).
        if isinstance(err, CheckpointError) and err.__context__ and processes.lost_a_process(err.__context__):
            _partner_lost(watch.run_dir)
        # Refused on this process alone (its text missing, say): the others
        # wait for it in a collective, and Python's exit would wait for them
        # in JAX's shutdown barrier, minutes, then abort with a C++ stack
        # trace. Gone at once, it is a lost process to them: they stop too.
        say_error(str(err), err.details)
        end_at_once(EXIT_USAGE)
    except Exception as err:
        if not processes.lost_a_process(err):
            raise
        _partner_lost(watch.run_dir)
    # Every process of a multi-process run ends here, or diverged above,
    # together, and leaves the run with the others once it has said how it
    # ended (an abort, a third Ctrl-C, leaves the others running: JAX's exit
    # handler is left to try).
    if model.ended == "interrupted":
        if processes.is_main():
            say(f"interrupted; checkpoint saved. {_continue_with(watch.run_dir)}")
        processes.leave()
        raise typer.Exit(stop.exit_status)
    if level:
        say(f"sample with: charlstm sample {_quoted(watch.run_dir)}")
        if model.ended == "time limit":  # steps remain; a resume keeps the limit unless told another
            say(
                f"or train on: charlstm resume {_quoted(watch.run_dir)} (for {option('max_seconds')} "
                f"{minutes(model.train_config.max_seconds or 0)} again, or give another)"
            )
    processes.leave()


def _partner_lost(run_dir: Path | None) -> NoReturn:
    """End this process of a multi-process run whose partner died (killed,
    out of memory, its host gone): the collectives are broken, and JAX's
    exit would wait out its shutdown barrier (about 90 s) and then abort
    with a C++ stack trace."""
    say(f"error: another process of this multi-process run stopped, so this one cannot go on; {_what_is_left(run_dir)}")
    end_at_once(EXIT_ABORTED)


def _quoted(path: Path | str | None) -> str:
    """A path as a shell reads it back: a run named after "My Poems.txt" has a space."""
    return shell_word(str(path))


def _continue_with(run_dir: Path | None) -> str:
    """The resume command, and what a multi-process run's needs besides."""
    from charlstm.training import processes

    joined = processes.joined()
    place = f"{option('coordinator')}, {option('num_processes')} and {option('process_id')}"
    everywhere = f" (in every process, with its {place})" if joined else ""
    return f"Continue with: charlstm resume {_quoted(run_dir)}{everywhere}"


def _what_is_left(run_dir: Path | None) -> str:
    """After an abort: what the run directory holds, and what to do next."""
    if run_dir is None:
        return "no run directory was made yet"
    from charlstm.training import checkpoint_paths

    if not checkpoint_paths.has_checkpoint(run_dir):
        return (
            f"{run_dir} has no checkpoint yet: run the same command again with {option('out')} {_quoted(run_dir)}, "
            "which starts afresh there"
        )
    return f"earlier checkpoints are intact. {_continue_with(run_dir)}"


def _diverged_advice(diverged: TrainingDiverged) -> str:
    lower = diverged.learning_rate / 2
    if diverged.last_good is None:
        advice = (
            "No checkpoint was saved before it: start again with a lower learning rate, e.g. "
            f"{option('learning_rate')} {lower:.2g}, in another {option('out')} or after "
            f"rm -r {_quoted(diverged.run_dir)}."
        )
    else:
        advice = (
            f"The last good checkpoint is {diverged.last_good} (step {diverged.last_good_step}); continue from it "
            f"with a lower learning rate: charlstm resume {_quoted(diverged.run_dir)} "
            f"{option('learning_rate')} {lower:.2g} {option('steps')} {diverged.steps}"
        )
    return (
        f"training diverged at step {diverged.step} (a loss, the gradients or the parameters stopped being finite); "
        f"nothing from it was saved. {advice}"
    )
