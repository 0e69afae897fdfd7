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


def _verbosity(quiet: bool, verbose: bool) -> int:
    if quiet and verbose:
        fail("--quiet and --verbose contradict each other; pick one")
    return 0 if quiet else 2 if verbose else 1


def _train(run: Run, run_dir: Path, verbosity: int) -> None:
    from charlstm import api
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
            finished = api.run_session(run, run_dir, display.handle, stop)
    except KeyboardInterrupt:
        say(f"aborted without saving; earlier checkpoints are intact. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_ABORTED) from None
    if finished.reason == "diverged":
        advice = _last_good(run_dir, run.train_config.learning_rate / 2, run.train_config.steps)
        say(
            f"error: training diverged at step {finished.step} (a loss, the gradients or the parameters "
            f"stopped being finite); nothing from it was saved. {advice}"
        )
        raise typer.Exit(EXIT_DIVERGED)
    if finished.reason == "interrupted":
        say(f"interrupted; checkpoint saved. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_SIGINT if stop.signal == signal.SIGINT else EXIT_SIGTERM)
    if verbosity:
        say(f"sample with: charlstm sample --checkpoint {run_dir}")


def train(
    corpus: Annotated[
        str,
        typer.Argument(
            help="UTF-8 text file to learn from; a shipped corpus's name (shakespeare.txt) works from any directory."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory [default: runs/<corpus>-<time>].")
    ] = None,
    hidden: Annotated[int, typer.Option(help="Hidden size (units per recurrent layer).")] = _M.hidden_size,
    layers: Annotated[int, typer.Option(help="Number of stacked recurrent layers.")] = _M.num_layers,
    cell: Annotated[
        str, typer.Option(help="Recurrent cell: lstm, or gru (lighter: three gates, no cell state).")
    ] = _M.cell,
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
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train a new model on CORPUS and save checkpoints in a run directory."""
    level = _verbosity(quiet, verbose)
    with user_errors():
        from charlstm import api, data, runs
        from charlstm.config import TrainConfig

        train_config = TrainConfig(
            steps=steps,
            batch_size=batch_size,
            seq_len=seq_len,
            learning_rate=lr,
            warmup_steps=warmup,
            weight_decay=weight_decay,
            grad_clip=clip,
            val_fraction=val_fraction,
            reset_chars=reset_chars,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            max_seconds=None if max_time is None else max_time * 60,
            seed=seed,
        )
        path, shipped = data.resolve_corpus_path(corpus)
        if shipped and level:
            say(f"note: no file {corpus} here; using the shipped corpus {path}")
        run_dir = out if out is not None else runs.default_run_dir(path)
        model = {"hidden_size": hidden, "num_layers": layers, "embed_dim": embed, "cell": cell}
        run, run_dir = api.prepare(path, run_dir, model, train_config)
        use_cache()
        _train(run, run_dir, level)


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
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Continue a run exactly where its latest checkpoint left it."""
    level = _verbosity(quiet, verbose)
    with user_errors():
        from charlstm import runs

        overrides = {
            "steps": steps,
            "max_seconds": None if max_time is None else max_time * 60,
            "learning_rate": lr,
            "eval_every": eval_every,
            "checkpoint_every": checkpoint_every,
            "log_every": log_every,
        }
        run = runs.resume_run(run_dir, {k: v for k, v in overrides.items() if v is not None}, force=force)
        use_cache()
        _train(run, run_dir, level)
