"""The `charlstm` command line: parse options, call the library, render.

JAX, Flax and Orbax are imported inside the commands, so `charlstm --help`
answers without loading them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from charlstm.config import ModelConfig as _M
from charlstm.config import SampleConfig
from charlstm.config import TrainConfig as _T
from charlstm.errors import CharlstmError

if TYPE_CHECKING:
    from charlstm.state import Run

app = typer.Typer(
    name="charlstm",
    help=(
        "Character-level text generation with an LSTM in JAX.\n\n"
        "Train on any UTF-8 text, watch it learn, sample new text in its style, "
        "and resume any run from its checkpoint.\n\n"
        "Example: charlstm train shakespeare.txt && charlstm sample --temp 0.8"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

EXIT_DIVERGED = 1
EXIT_ABORTED = 3
EXIT_USAGE = 2
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _say(message: str) -> None:
    # Paths and user text can contain [brackets]: never read them as markup.
    _stderr().print(message, highlight=False, markup=False)


def _fail(message: str) -> NoReturn:
    _say(f"error: {message}")
    raise typer.Exit(EXIT_USAGE)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except CharlstmError as err:
        _fail(str(err))


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


def _train(run: Run, run_dir: Path) -> None:
    from charlstm import events
    from charlstm.checkpoint import CheckpointWriter
    from charlstm.progress import TrainingDisplay
    from charlstm.train import fit

    stop = _StopFlag()
    writer = CheckpointWriter(run_dir)
    _say(f"run directory: {run_dir}")
    finished: events.Finished | None = None
    try:
        with stop.installed(), TrainingDisplay(_stderr()) as display:
            for event in fit(run, writer.save, stop):
                display.handle(event)
                if isinstance(event, events.Finished):
                    finished = event
    except KeyboardInterrupt:
        _say(f"aborted without saving; earlier checkpoints are intact. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_ABORTED) from None
    finally:
        writer.close()
    if finished is not None and finished.reason == "diverged":
        advice = _last_good(run_dir, run.train_config.learning_rate / 2, run.train_config.steps)
        _say(
            f"error: training diverged at step {finished.step} (a loss, the gradients or the parameters "
            f"stopped being finite); nothing from it was saved. {advice}"
        )
        raise typer.Exit(EXIT_DIVERGED)
    if finished is not None and finished.reason == "interrupted":
        _say(f"interrupted; checkpoint saved. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_SIGINT if stop.signal == signal.SIGINT else EXIT_SIGTERM)
    _say(f"sample with: charlstm sample --checkpoint {run_dir}")


@app.command()
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
    hidden: Annotated[int, typer.Option(help="LSTM hidden size (units per layer).")] = _M.hidden_size,
    layers: Annotated[int, typer.Option(help="Number of stacked LSTM layers.")] = _M.num_layers,
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
    eval_every: Annotated[int, typer.Option("--eval-every", help="Steps between validation passes.")] = _T.eval_every,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")
    ] = _T.checkpoint_every,
    seed: Annotated[int, typer.Option(help="Random seed for initialisation.")] = _T.seed,
) -> None:
    """Train a new model on CORPUS and save checkpoints in a run directory."""
    with _user_errors():
        from charlstm import data, runs
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
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            max_seconds=None if max_time is None else max_time * 60,
            seed=seed,
        )
        path, shipped = data.resolve_corpus_path(corpus)
        if shipped:
            _say(f"note: no file {corpus} here; using the shipped corpus {path}")
        text = data.read_corpus(path.resolve())
        run = runs.new_run(text, {"hidden_size": hidden, "num_layers": layers, "embed_dim": embed}, train_config)
        run_dir = out if out is not None else runs.default_run_dir(path)
        runs.prepare_run_dir(run_dir)
        _train(run, run_dir)


@app.command()
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
    force: Annotated[bool, typer.Option(help="Resume even if the corpus file changed since the run started.")] = False,
) -> None:
    """Continue a run exactly where its latest checkpoint left it."""
    with _user_errors():
        from charlstm import runs

        overrides = {
            "steps": steps,
            "max_seconds": None if max_time is None else max_time * 60,
            "learning_rate": lr,
            "eval_every": eval_every,
            "checkpoint_every": checkpoint_every,
        }
        run = runs.resume_run(run_dir, {k: v for k, v in overrides.items() if v is not None}, force=force)
        _train(run, run_dir)


@app.command()
def sample(
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", "-c", help="Run directory or checkpoint [default: the most recent run under runs/]."
        ),
    ] = None,
    temp: Annotated[
        float, typer.Option("--temp", "-t", help="Sampling temperature: lower is safer, higher is wilder; 0 is greedy.")
    ] = SampleConfig.temperature,
    length: Annotated[int, typer.Option("--length", "-n", help="Characters to generate.")] = SampleConfig.length,
    prime: Annotated[str, typer.Option(help="Text to start from; it is printed, then continued.")] = SampleConfig.prime,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same text.")] = SampleConfig.seed,
) -> None:
    """Print new text from a trained model to stdout."""
    with _user_errors():
        request = SampleConfig(length=length, temperature=temp, prime=prime, seed=seed)
        from charlstm import checkpoint as ckpt_lib
        from charlstm.runs import RUNS_DIR
        from charlstm.sample import sample_text

        source = checkpoint if checkpoint is not None else ckpt_lib.most_recent_run(RUNS_DIR)
        ckpt = ckpt_lib.load(source, prefer=ckpt_lib.BEST)
        best = f", validation loss {ckpt.best_val_loss:.3f}" if ckpt.best_val_loss is not None else ""
        text = sample_text(ckpt.model_config, ckpt.state.params, ckpt.vocab, request)
        _say(f"sampled from {ckpt.path} (step {int(ckpt.state.step)}{best})")
        sys.stdout.write(prime + text)
        if not text.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()


def main() -> None:
    app()
