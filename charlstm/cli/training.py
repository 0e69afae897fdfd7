"""`charlstm train` and `charlstm resume`: the options the user gave go to
`charlstm.train` / `charlstm.resume`; what comes back is rendered here.

What stays in the CLI: parsing, joining a multi-process run (before JAX
touches any device), signals, and turning the outcome into words and an
exit status.
"""

from __future__ import annotations

import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charlstm.cli.app import (
    EXIT_ABORTED,
    EXIT_DIVERGED,
    Quiet,
    Verbose,
    end_at_once,
    given,
    say,
    stderr,
    use_cache,
    user_errors,
    verbosity,
)
from charlstm.cli.display import QUIET
from charlstm.cli.signals import StopFlag, end_now
from charlstm.config import FINE_TUNE_LEARNING_RATE
from charlstm.config import ModelConfig as _M
from charlstm.config import TrainConfig as _T
from charlstm.flags import flag
from charlstm.presets import PRESETS

if TYPE_CHECKING:
    from charlstm.api import Model, TrainingDiverged

# Where training runs (see charlstm/training/distributed.py); shared by train and resume.
Devices = Annotated[
    int | None,
    typer.Option(
        flag("devices"),
        help="Split each batch over this many of this process's devices [default: all of them; "
        "on a CPU, 2 where the batch splits evenly]; the batch size must divide by the total over all processes.",
    ),
]
Coordinator = Annotated[
    str | None,
    typer.Option(
        flag("coordinator"),
        envvar="CHARLSTM_COORDINATOR",
        help="HOST:PORT of process 0, to train in several processes (every process names the same); "
        "'auto': let JAX find it on a cluster.",
    ),
]
NumProcesses = Annotated[
    int | None,
    typer.Option(flag("num_processes"), envvar="CHARLSTM_NUM_PROCESSES", help="Processes in a multi-process run."),
]
ProcessId = Annotated[
    int | None,
    typer.Option(flag("process_id"), envvar="CHARLSTM_PROCESS_ID", help="This process's index, 0 to N-1."),
]
_MAX_TIME = (
    "Stop after this many minutes of training even if steps remain; a run of at least ten warm-ups that this "
    "would cut short gets its learning rate schedule fitted to end by then."
)
_EVAL_EVERY = "Steps between validation passes."
_CHECKPOINT_EVERY = "Steps between checkpoints."
_LOG_EVERY = "Steps between progress reports and metrics.jsonl lines."

_PRECISION = (
    "bf16: the training step's matrix products in bfloat16 with float32 results, for GPUs and TPUs (the "
    "parameters, optimizer, cell state and loss stay float32; sampling and validation are float32)."
)
_PATIENCE = (
    "Stop after this many validation passes in a row without a new best validation loss; the best checkpoint "
    "is the one kept [default: train for all --steps]."
)

# The parameters of `train` that are charlstm.train's keyword arguments, by the same names.
_TRAIN_ARGS = (
    *("preset", "hidden_size", "num_layers", "cell", "norm", "embed_dim", "steps", "batch_size", "seq_len"),
    *("learning_rate", "warmup_steps", "min_lr_ratio", "weight_decay", "dropout", "grad_clip"),
    *("val_fraction", "reset_chars"),
    *("eval_every", "checkpoint_every", "log_every", "seed", "patience", "precision"),
    *("glob", "val_file", "skip_bad_files", "init_from"),
)


# What to read: `train` and `tune` take the same files, folders and options.
CorpusArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="CORPUS",
        help="UTF-8 text files or folders to learn from, each file a document of its own; a shipped corpus's "
        "name (shakespeare.txt) works from any directory.",
        show_default=False,
    ),
]
GlobOption = Annotated[
    str | None,
    typer.Option(
        flag("glob"),
        help="Which files of a folder to read, as a pattern relative to it ('**/*.py': every .py file at any "
        "depth); hidden files and folders are left out. [default: **/*.txt]",
        show_default=False,
    ),
]
ValFileOption = Annotated[
    list[Path] | None,
    typer.Option(
        flag("val_file"),
        help="Validate on this file, or a folder's files, instead of holding out a share of the corpus (repeat it "
        "for several); a training folder's files given here are left out of training.",
        show_default=False,
        metavar="<path>",  # one at a time, repeated; Typer would write <list[Path]>
    ),
]
SkipBadFilesOption = Annotated[
    bool,
    typer.Option(
        flag("skip_bad_files"),
        help="Leave out files that are not UTF-8 text, naming each, instead of stopping.",
    ),
]


def train(
    ctx: typer.Context,
    corpus: CorpusArgument,
    glob: GlobOption = None,
    val_file: ValFileOption = None,
    skip_bad_files: SkipBadFilesOption = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            flag("init_from"),
            help="Fine-tune: start from this run's best checkpoint (or a checkpoint directory), with a fresh "
            "optimizer and schedule. The model keeps its shape; characters it never saw get new rows. The "
            f"learning rate defaults to {FINE_TUNE_LEARNING_RATE:g}, a new run's: measured, lower rates learned "
            "new text more slowly than training from scratch; a lower --lr keeps more of what the model knew.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(flag("out"), "-o", help="Run directory [default: runs/<corpus>-<time>].")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            flag("preset"),
            help="Start from a named size: "
            + "; ".join(f"{p.name} ({p.purpose})" for p in PRESETS.values())
            + ". Options given here override it.",
        ),
    ] = None,
    hidden_size: Annotated[
        int, typer.Option(flag("hidden_size"), help="Hidden size (units per recurrent layer).")
    ] = _M.hidden_size,
    num_layers: Annotated[
        int, typer.Option(flag("num_layers"), help="Number of stacked recurrent layers.")
    ] = _M.num_layers,
    cell: Annotated[
        str, typer.Option(flag("cell"), help="Recurrent cell: lstm, or gru (lighter: three gates, no cell state).")
    ] = _M.cell,
    norm: Annotated[
        str,
        typer.Option(
            flag("norm"),
            help="layer: layer normalisation inside the LSTM cell (learns faster per step, each step about 1.35x "
            "the plain cell's on a CPU), or none; auto is layer for the LSTM, none for the GRU.",
        ),
    ] = _M.norm,
    embed_dim: Annotated[int, typer.Option(flag("embed_dim"), help="Character embedding size.")] = _M.embed_dim,
    steps: Annotated[int, typer.Option(flag("steps"), help="Optimizer steps to train for.")] = _T.steps,
    max_time: Annotated[float | None, typer.Option(flag("max_seconds"), help=_MAX_TIME)] = None,
    batch_size: Annotated[
        int, typer.Option(flag("batch_size"), "-b", help="Parallel text streams per step.")
    ] = _T.batch_size,
    seq_len: Annotated[
        int, typer.Option(flag("seq_len"), help="Characters per window (backprop truncation length).")
    ] = _T.seq_len,
    learning_rate: Annotated[
        float,
        typer.Option(
            flag("learning_rate"),
            help="Peak learning rate (after warmup, before cosine decay); "
            f"{FINE_TUNE_LEARNING_RATE:g} when fine-tuning ({flag('init_from')}).",
        ),
    ] = _T.learning_rate,
    warmup_steps: Annotated[
        int, typer.Option(flag("warmup_steps"), help="Learning-rate warmup steps (at most a tenth of --steps).")
    ] = _T.warmup_steps,
    min_lr_ratio: Annotated[
        float,
        typer.Option(
            flag("min_lr_ratio"), help=f"Where the cosine decay ends, as a share of {flag('learning_rate')} (0 to 1)."
        ),
    ] = _T.min_lr_ratio,
    weight_decay: Annotated[
        float, typer.Option(flag("weight_decay"), help="AdamW decoupled weight decay on weight matrices.")
    ] = _T.weight_decay,
    dropout: Annotated[
        float,
        typer.Option(flag("dropout"), help="Drop this share of each recurrent layer's outputs in training (0: none)."),
    ] = _T.dropout,
    grad_clip: Annotated[
        float, typer.Option(flag("grad_clip"), help="Clip the global gradient norm to this.")
    ] = _T.grad_clip,
    val_fraction: Annotated[
        float, typer.Option(flag("val_fraction"), help="Share of the text, from its end, held out for validation.")
    ] = _T.val_fraction,
    reset_chars: Annotated[
        int,
        typer.Option(
            flag("reset_chars"),
            help="Restart each stream's carried state from zero every this many characters (staggered), as "
            "sampling starts; 0: only at each new pass over the text.",
        ),
    ] = _T.reset_chars,
    eval_every: Annotated[int, typer.Option(flag("eval_every"), help=_EVAL_EVERY)] = _T.eval_every,
    checkpoint_every: Annotated[
        int, typer.Option(flag("checkpoint_every"), help=_CHECKPOINT_EVERY)
    ] = _T.checkpoint_every,
    log_every: Annotated[int, typer.Option(flag("log_every"), help=_LOG_EVERY)] = _T.log_every,
    seed: Annotated[int, typer.Option(flag("seed"), help="Random seed: the initial weights and dropout.")] = _T.seed,
    patience: Annotated[int | None, typer.Option(flag("patience"), help=_PATIENCE, show_default=False)] = None,
    precision: Annotated[str, typer.Option(flag("precision"), help=_PRECISION)] = _T.precision,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train a new model on CORPUS (files and folders) and save checkpoints in a run directory."""
    level = verbosity(quiet, verbose)
    options = given(ctx, _TRAIN_ARGS)
    if max_time is not None:
        options["max_seconds"] = max_time * 60
    _start(
        level,
        (coordinator, num_processes, process_id, devices),
        lambda api, watch, stop: api.train(corpus, out, on_event=watch, should_stop=stop, devices=devices, **options),
    )


def resume(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run directory to continue (from its latest checkpoint).")
    ],
    steps: Annotated[
        int | None, typer.Option(flag("steps"), help="New total step count, to extend a finished run.")
    ] = None,
    max_time: Annotated[float | None, typer.Option(flag("max_seconds"), help=_MAX_TIME)] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(flag("learning_rate"), help="New peak learning rate (changes the schedule from here on)."),
    ] = None,
    eval_every: Annotated[int | None, typer.Option(flag("eval_every"), help=_EVAL_EVERY)] = None,
    checkpoint_every: Annotated[int | None, typer.Option(flag("checkpoint_every"), help=_CHECKPOINT_EVERY)] = None,
    log_every: Annotated[int | None, typer.Option(flag("log_every"), help=_LOG_EVERY)] = None,
    patience: Annotated[int | None, typer.Option(flag("patience"), help=_PATIENCE, show_default=False)] = None,
    precision: Annotated[
        str | None, typer.Option(flag("precision"), help=_PRECISION + " [default: the run's]", show_default=False)
    ] = None,
    force: Annotated[
        bool, typer.Option(flag("force"), help="Resume even if the corpus's files changed since the run started.")
    ] = False,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Continue a run exactly where its latest checkpoint left it (on any
    number of devices and processes the batch splits evenly over)."""
    level = verbosity(quiet, verbose)
    changes = {
        "steps": steps,
        "max_seconds": None if max_time is None else max_time * 60,
        "learning_rate": learning_rate,
        "eval_every": eval_every,
        "checkpoint_every": checkpoint_every,
        "log_every": log_every,
        "patience": patience,
        "precision": precision,
    }
    overrides = {name: value for name, value in changes.items() if value is not None}
    _start(
        level,
        (coordinator, num_processes, process_id, devices),
        lambda api, watch, stop: api.resume(
            run_dir, force=force, on_event=watch, should_stop=stop, devices=devices, **overrides
        ),
    )


def _start(
    level: int,
    layout: tuple[str | None, int | None, int | None, int | None],
    start: Callable[[Any, _Watch, StopFlag], Model],
) -> None:
    """What `train` and `resume` share: import the API with the signal
    handlers in place (a Ctrl-C while JAX is imported is not lost), join a
    multi-process run without them, then train (`start(api, watch, stop)`)
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
        from charlstm.training import distributed

        stop.quiet = quiet or not distributed.is_main()  # only the first process of several says so
        with stop.installed():
            use_cache()
            _train(level, stop, lambda watch: start(api, watch, stop))


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
    from charlstm.training import distributed

    if stop():
        say("interrupted before training began; nothing was written")
        raise typer.Exit(stop.exit_status)
    # One process splits the CPU unless told otherwise; the processes of a
    # run on several keep one CPU device each unless --devices says more.
    distributed.check_layout(coordinator, num_processes, process_id)  # before the wait below
    if level > 0 and coordinator not in (None, "auto"):
        say(
            f"joining a run of {num_processes or 'several'} processes at {coordinator}: "
            f"waiting for the others (up to {distributed.join_timeout():g} s)"
        )
    # JAX waits for the others in C++, where no Python handler runs: a
    # signal meanwhile ends the process as its default does.
    handlers = {sig: signal.signal(sig, signal.SIG_DFL) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        joined = distributed.initialize(coordinator, num_processes, process_id, on_timeout=_gave_up_joining)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    if joined:
        distributed.quiet_about_lost_processes()
    if not joined or devices is not None:
        split_the_cpu(devices)
    return level if distributed.is_main() else 0


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


def _train(level: int, stop: StopFlag, start: Callable[[_Watch], Model]) -> None:
    """Train (a new or resumed run, as `start` says) with the display in
    place and `stop`'s signal handlers installed, then say how it ended."""
    from charlstm.api import TrainingDiverged
    from charlstm.cli.display import TrainingDisplay
    from charlstm.training import distributed

    display = TrainingDisplay(stderr(), level)
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
        if distributed.is_main():  # the processes agree on how it ended; one says so
            say(f"error: {_diverged_advice(diverged)}")
        distributed.leave()
        raise typer.Exit(EXIT_DIVERGED) from None
    except Exception as err:
        if not distributed.lost_a_process(err):
            raise
        # A partner died (killed, out of memory, its host gone): the
        # collectives are broken, and JAX's exit would wait out its shutdown
        # barrier (about 90 s) and then abort with a C++ stack trace.
        say(
            "error: another process of this multi-process run stopped, so this one cannot go on; "
            f"{_what_is_left(watch.run_dir)}"
        )
        end_at_once(EXIT_ABORTED)
    # Every process of a multi-process run ends here, or diverged above,
    # together, and leaves the run with the others once it has said how it
    # ended (an abort, a third Ctrl-C, leaves the others running: JAX's exit
    # handler is left to try).
    if model.ended == "interrupted":
        if distributed.is_main():
            say(f"interrupted; checkpoint saved. {_continue_with(watch.run_dir)}")
        distributed.leave()
        raise typer.Exit(stop.exit_status)
    if level:
        say(f"sample with: charlstm sample {_quoted(watch.run_dir)}")
    distributed.leave()


def _quoted(path: Path | str | None) -> str:
    """A path as a shell reads it back: a run named after "My Poems.txt" has a space."""
    return shlex.quote(str(path))


def _continue_with(run_dir: Path | None) -> str:
    """The resume command, and what a multi-process run's needs besides."""
    from charlstm.training import distributed

    joined = distributed.joined()
    everywhere = " (in every process, with its --coordinator, --num-processes and --process-id)" if joined else ""
    return f"Continue with: charlstm resume {_quoted(run_dir)}{everywhere}"


def _what_is_left(run_dir: Path | None) -> str:
    """After an abort: what the run directory holds, and what to do next."""
    if run_dir is None:
        return "no run directory was made yet"
    from charlstm.training import checkpoint

    kinds = (checkpoint.LATEST, checkpoint.BEST)
    if all(checkpoint.latest_step(run_dir / "checkpoints" / kind) is None for kind in kinds):
        return (
            f"{run_dir} has no checkpoint yet: remove it (rm -r {_quoted(run_dir)}) or pick another {flag('out')}, "
            "then start again"
        )
    return f"earlier checkpoints are intact. {_continue_with(run_dir)}"


def _diverged_advice(diverged: TrainingDiverged) -> str:
    lower = diverged.learning_rate / 2
    if diverged.last_good is None:
        advice = (
            "No checkpoint was saved before it: start again with a lower learning rate, e.g. "
            f"{flag('learning_rate')} {lower:.2g}, in another {flag('out')} or after rm -r {_quoted(diverged.run_dir)}."
        )
    else:
        advice = (
            f"The last good checkpoint is {diverged.last_good} (step {diverged.last_good_step}); continue from it "
            f"with a lower learning rate: charlstm resume {_quoted(diverged.run_dir)} "
            f"{flag('learning_rate')} {lower:.2g} {flag('steps')} {diverged.steps}"
        )
    return (
        f"training diverged at step {diverged.step} (a loss, the gradients or the parameters stopped being finite); "
        f"nothing from it was saved. {advice}"
    )
