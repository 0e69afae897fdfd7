"""`charlstm train` and `charlstm resume`, and how they handle signals."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from charlstm.cli.app import (
    EXIT_ABORTED,
    EXIT_DIVERGED,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    Quiet,
    Verbose,
    fail,
    say,
    stderr,
    use_cache,
    user_errors,
)
from charlstm.config import ModelConfig as _M
from charlstm.config import TrainConfig as _T

if TYPE_CHECKING:
    from charlstm.state import Run

# Where training runs (see charlstm/distributed.py); shared by train and resume.
Devices = Annotated[
    int | None,
    typer.Option(
        "--devices",
        help="Split each batch over this many of this process's devices [default: all of them]; "
        "the batch size must divide by the total over all processes.",
    ),
]
Coordinator = Annotated[
    str | None,
    typer.Option(
        "--coordinator",
        envvar="CHARLSTM_COORDINATOR",
        help="HOST:PORT of process 0, to train in several processes (every process names the same); "
        "'auto': let JAX find it on a cluster.",
    ),
]
NumProcesses = Annotated[
    int | None,
    typer.Option("--num-processes", envvar="CHARLSTM_NUM_PROCESSES", help="Processes in a multi-process run."),
]
ProcessId = Annotated[
    int | None,
    typer.Option("--process-id", envvar="CHARLSTM_PROCESS_ID", help="This process's index, 0 to N-1."),
]


class _StopFlag:
    """Ctrl-C / SIGTERM ask the loop to stop at the next step boundary and
    save, so the checkpoint it then writes is never cut off half-way. A second
    signal says so; a third aborts at once, without that save (the earlier
    checkpoints survive: saves are atomic)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.count = 0

    def __call__(self) -> bool:
        return self.signal is not None

    @contextmanager
    def installed(self) -> Iterator[None]:
        def handler(signum: int, frame: Any) -> None:
            self.count += 1
            if self.signal is None:
                self.signal = signum
            elif self.count == 2:
                # os.write, not print: a handler may interrupt a print in progress.
                os.write(2, b"stopping after the checkpoint is saved; signal once more to abort without it\n")
            else:
                raise KeyboardInterrupt

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _last_good(run_dir: Path, lower_lr: float, steps: int) -> str:
    from charlstm import checkpoint
    from charlstm.errors import CheckpointError

    try:
        directory, step = checkpoint.locate(run_dir, prefer=checkpoint.LATEST)
    except CheckpointError:
        return f"No checkpoint was saved before it: start again with a lower learning rate, e.g. --lr {lower_lr:.2g}."
    return (
        f"The last good checkpoint is {directory / str(step)} (step {step}); continue from it with a lower "
        f"learning rate: charlstm resume {run_dir} --lr {lower_lr:.2g} --steps {steps}"
    )


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option `name` (on the command line or through the
    environment) rather than leaving it at its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _verbosity(quiet: bool, verbose: bool) -> int:
    if quiet and verbose:
        fail("--quiet and --verbose contradict each other; pick one")
    return 0 if quiet else 2 if verbose else 1


def _join(coordinator: str | None, num_processes: int | None, process_id: int | None, verbosity: int) -> int:
    """Join a multi-process run if one is asked for or detected (before
    anything touches JAX's devices); the verbosity this process reports with:
    only process 0 reports."""
    from charlstm import distributed

    distributed.initialize(coordinator, num_processes, process_id)
    return verbosity if distributed.is_main() else 0


def _train(run: Run, run_dir: Path, verbosity: int, devices: int | None = None) -> None:
    from charlstm import api, distributed
    from charlstm.model import count_params
    from charlstm.progress import TrainingDisplay

    stop = _StopFlag()
    if verbosity:
        say(f"run directory: {run_dir}")
    if verbosity > 1:
        mc, tc = run.model_config, run.train_config
        say(f"model: {mc} ({count_params(run.state.params):,} parameters)")
        say(f"training: {tc}")
    try:
        with stop.installed(), TrainingDisplay(stderr(), verbosity) as display:
            finished = api.run_session(run, run_dir, display.handle, stop, devices)
    except KeyboardInterrupt:
        say(f"aborted without saving; earlier checkpoints are intact. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_ABORTED) from None
    if not distributed.is_main():  # the processes agree on how it ended; one says so
        if finished.reason in ("diverged", "interrupted"):
            raise typer.Exit(EXIT_DIVERGED if finished.reason == "diverged" else _interrupted_status(stop))
        return
    if finished.reason == "diverged":
        advice = _last_good(run_dir, run.train_config.learning_rate / 2, run.train_config.steps)
        say(
            f"error: training diverged at step {finished.step} (a loss, the gradients or the parameters "
            f"stopped being finite); nothing from it was saved. {advice}"
        )
        raise typer.Exit(EXIT_DIVERGED)
    if finished.reason == "interrupted":
        say(f"interrupted; checkpoint saved. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(_interrupted_status(stop))
    if verbosity:
        say(f"sample with: charlstm sample --checkpoint {run_dir}")


def _interrupted_status(stop: _StopFlag) -> int:
    # SIGTERM also when another process of a multi-process run was the one signalled.
    return EXIT_SIGINT if stop.signal == signal.SIGINT else EXIT_SIGTERM


def train(
    ctx: typer.Context,
    corpus: Annotated[
        str,
        typer.Argument(
            help="UTF-8 text file to learn from; a shipped corpus's name (shakespeare.txt) works from any directory."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory [default: runs/<corpus>-<time>].")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Start from a named size: tiny (a minute on a CPU), small (10 CPU minutes: the defaults), "
            "medium (a GPU hour), large (a long GPU run). Options given here override it."
        ),
    ] = None,
    hidden: Annotated[int, typer.Option(help="Hidden size (units per recurrent layer).")] = _M.hidden_size,
    layers: Annotated[int, typer.Option(help="Number of stacked recurrent layers.")] = _M.num_layers,
    cell: Annotated[
        str, typer.Option(help="Recurrent cell: lstm, or gru (lighter: three gates, no cell state).")
    ] = _M.cell,
    norm: Annotated[
        str,
        typer.Option(
            help="layer: layer normalisation inside the LSTM cell (learns faster per step, each step about 1.35x "
            "the plain cell's on a CPU), or none; auto is layer for the LSTM, none for the GRU."
        ),
    ] = _M.norm,
    embed: Annotated[int, typer.Option(help="Character embedding size.")] = _M.embed_dim,
    steps: Annotated[int, typer.Option(help="Optimizer steps to train for.")] = _T.steps,
    max_time: Annotated[
        float | None, typer.Option("--max-time", help="Stop after this many minutes even if steps remain.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="Parallel text streams per step.")
    ] = _T.batch_size,
    seq_len: Annotated[
        int, typer.Option("--seq-len", help="Characters per window (backprop truncation length).")
    ] = _T.seq_len,
    lr: Annotated[
        float, typer.Option("--lr", help="Peak learning rate (after warmup, before cosine decay).")
    ] = _T.learning_rate,
    warmup: Annotated[
        int, typer.Option(help="Learning-rate warmup steps (at most a tenth of --steps).")
    ] = _T.warmup_steps,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", help="AdamW decoupled weight decay on weight matrices.")
    ] = _T.weight_decay,
    dropout: Annotated[
        float, typer.Option(help="Drop this share of each recurrent layer's outputs in training (0: none).")
    ] = _T.dropout,
    clip: Annotated[float, typer.Option(help="Clip the global gradient norm to this.")] = _T.grad_clip,
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share of the text, from its end, held out for validation.")
    ] = _T.val_fraction,
    reset_chars: Annotated[
        int,
        typer.Option(
            "--reset-chars",
            help="Restart each stream's carried state from zero every this many characters (staggered), as "
            "sampling starts; 0: only at each new pass over the text.",
        ),
    ] = _T.reset_chars,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Steps between validation passes.")] = _T.eval_every,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")
    ] = _T.checkpoint_every,
    log_every: Annotated[
        int, typer.Option("--log-every", help="Steps between progress reports and metrics.jsonl lines.")
    ] = _T.log_every,
    seed: Annotated[int, typer.Option(help="Random seed for initialisation.")] = _T.seed,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train a new model on CORPUS and save checkpoints in a run directory."""
    level = _verbosity(quiet, verbose)
    with user_errors():
        from charlstm import api, data, distributed, presets
        from charlstm.config import TrainConfig

        # (config field, command-line parameter, value)
        model_options = [
            ("hidden_size", "hidden", hidden),
            ("num_layers", "layers", layers),
            ("embed_dim", "embed", embed),
            ("cell", "cell", cell),
            ("norm", "norm", norm),
        ]
        train_options = [
            ("steps", "steps", steps),
            ("batch_size", "batch_size", batch_size),
            ("seq_len", "seq_len", seq_len),
            ("learning_rate", "lr", lr),
            ("warmup_steps", "warmup", warmup),
            ("weight_decay", "weight_decay", weight_decay),
            ("dropout", "dropout", dropout),
            ("grad_clip", "clip", clip),
            ("val_fraction", "val_fraction", val_fraction),
            ("reset_chars", "reset_chars", reset_chars),
            ("eval_every", "eval_every", eval_every),
            ("checkpoint_every", "checkpoint_every", checkpoint_every),
            ("log_every", "log_every", log_every),
            ("max_seconds", "max_time", None if max_time is None else max_time * 60),
            ("seed", "seed", seed),
        ]
        model, options = presets.apply(
            preset,
            {field: value for field, name, value in model_options if preset is None or _given(ctx, name)},
            {field: value for field, name, value in train_options if preset is None or _given(ctx, name)},
        )
        train_config = TrainConfig(**options)
        level = _join(coordinator, num_processes, process_id, level)
        # A batch the devices cannot share fails here, before the run directory exists.
        distributed.make_mesh(train_config.batch_size, devices)
        path, shipped = data.resolve_corpus_path(corpus)
        if shipped and level:
            say(f"note: no file {corpus} here; using the shipped corpus {path}")
        run, run_dir = api.prepare(path, out, model, train_config)
        use_cache()
        _train(run, run_dir, level, devices)


def resume(
    run_dir: Annotated[Path, typer.Argument(help="Run directory to continue (from its latest checkpoint).")],
    steps: Annotated[int | None, typer.Option(help="New total step count, to extend a finished run.")] = None,
    max_time: Annotated[float | None, typer.Option("--max-time", help="Stop after this many minutes.")] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="New peak learning rate (changes the schedule from here on).")
    ] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every", help="Steps between validation passes.")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option("--checkpoint-every", help="Steps between checkpoints.")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option("--log-every", help="Steps between progress reports and metrics lines.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Resume even if the corpus file changed since the run started.")] = False,
    devices: Devices = None,
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Continue a run exactly where its latest checkpoint left it (on any
    number of devices and processes the batch splits evenly over)."""
    level = _verbosity(quiet, verbose)
    with user_errors():
        from charlstm import distributed, runs

        level = _join(coordinator, num_processes, process_id, level)

        overrides = {
            "steps": steps,
            "max_seconds": None if max_time is None else max_time * 60,
            "learning_rate": lr,
            "eval_every": eval_every,
            "checkpoint_every": checkpoint_every,
            "log_every": log_every,
        }
        run = runs.resume_run(run_dir, {k: v for k, v in overrides.items() if v is not None}, force=force)
        distributed.make_mesh(run.train_config.batch_size, devices)
        use_cache()
        _train(run, run_dir, level, devices)
