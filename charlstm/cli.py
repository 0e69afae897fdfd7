"""The `charlstm` command line: parse options, call the library, render.

JAX, Flax and Orbax are imported inside the commands, so `charlstm --help`
answers without loading them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO

import typer
from rich.console import Console

from charlstm.config import ModelConfig as _M
from charlstm.config import SampleConfig, to_dict
from charlstm.config import TrainConfig as _T
from charlstm.errors import CharlstmError

if TYPE_CHECKING:
    from charlstm.api import Model
    from charlstm.state import Run

app = typer.Typer(
    name="charlstm",
    help=(
        "Character-level text generation with an LSTM in JAX.\n\n"
        "Train on any UTF-8 text, watch it learn, sample new text in its style, "
        "and resume any run from its checkpoint.\n\n"
        "Example: charlstm train shakespeare.txt && charlstm sample --temp 0.8"
    ),
    epilog=(
        "Exit statuses: 0 success, 1 training diverged, 2 bad input or options, "
        "3 aborted without a final save, 130/143 interrupted by SIGINT/SIGTERM after saving."
    ),
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

EXIT_DIVERGED = 1
EXIT_ABORTED = 3
EXIT_USAGE = 2
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Print more: configuration, every logged step.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_options = {"cache": True}


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _stdout() -> Console:
    return Console(soft_wrap=False)


def _print_table(table: Any) -> None:
    console = _stdout()
    if not console.is_terminal:
        # A file or pipe has no width to fit: never wrap cells there.
        console.width = max(console.width, Console(width=10_000).measure(table).maximum)
    console.print(table)


def _use_cache() -> None:
    if _options["cache"]:
        from charlstm.compile_cache import enable_compilation_cache

        enable_compilation_cache()


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


def _verbosity(quiet: bool, verbose: bool) -> int:
    if quiet and verbose:
        _fail("--quiet and --verbose contradict each other; pick one")
    return 0 if quiet else 2 if verbose else 1


def _train(run: Run, run_dir: Path, verbosity: int) -> None:
    from charlstm import api
    from charlstm.model import count_params
    from charlstm.progress import TrainingDisplay

    stop = _StopFlag()
    if verbosity:
        _say(f"run directory: {run_dir}")
    if verbosity > 1:
        mc, tc = run.model_config, run.train_config
        _say(f"model: {mc} ({count_params(run.state.params):,} parameters)")
        _say(f"training: {tc}")
    try:
        with stop.installed(), TrainingDisplay(_stderr(), verbosity) as display:
            finished = api.run_session(run, run_dir, display.handle, stop)
    except KeyboardInterrupt:
        _say(f"aborted without saving; earlier checkpoints are intact. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_ABORTED) from None
    if finished.reason == "diverged":
        advice = _last_good(run_dir, run.train_config.learning_rate / 2, run.train_config.steps)
        _say(
            f"error: training diverged at step {finished.step} (a loss, the gradients or the parameters "
            f"stopped being finite); nothing from it was saved. {advice}"
        )
        raise typer.Exit(EXIT_DIVERGED)
    if finished.reason == "interrupted":
        _say(f"interrupted; checkpoint saved. Continue with: charlstm resume {run_dir}")
        raise typer.Exit(EXIT_SIGINT if stop.signal == signal.SIGINT else EXIT_SIGTERM)
    if verbosity:
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
    with _user_errors():
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
            _say(f"note: no file {corpus} here; using the shipped corpus {path}")
        run_dir = out if out is not None else runs.default_run_dir(path)
        model = {"hidden_size": hidden, "num_layers": layers, "embed_dim": embed}
        run, run_dir = api.prepare(path, run_dir, model, train_config)
        _use_cache()
        _train(run, run_dir, level)


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
    log_every: Annotated[
        int | None, typer.Option("--log-every", help="Steps between progress reports and metrics lines.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Resume even if the corpus file changed since the run started.")] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Continue a run exactly where its latest checkpoint left it."""
    level = _verbosity(quiet, verbose)
    with _user_errors():
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
        _use_cache()
        _train(run, run_dir, level)


def _read_prime(prime: str, prime_file: Path | None) -> str:
    if prime_file is None:
        return prime
    if prime:
        _fail("give --prime or --prime-file, not both")
    try:
        return prime_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"--prime-file {prime_file} is not UTF-8 text")
    except OSError as err:
        _fail(f"cannot read --prime-file {prime_file}: {err.strerror}")


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
    greedy: Annotated[bool, typer.Option(help="Always take the most likely character (same as --temp 0).")] = False,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Draw only from the k most likely characters (0: all).")
    ] = SampleConfig.top_k,
    top_p: Annotated[
        float,
        typer.Option("--top-p", help="Draw only from the most likely characters that make up this probability."),
    ] = SampleConfig.top_p,
    length: Annotated[int, typer.Option("--length", "-n", help="Characters to generate.")] = SampleConfig.length,
    prime: Annotated[str, typer.Option(help="Text to start from; it is printed, then continued.")] = SampleConfig.prime,
    prime_file: Annotated[
        Path | None, typer.Option("--prime-file", help="Start from this file's text instead of --prime.")
    ] = None,
    num_samples: Annotated[
        int, typer.Option("--num-samples", "-N", help="Independent samples, generated together in one batch.")
    ] = SampleConfig.num_samples,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same text.")] = SampleConfig.seed,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per sample (text and settings), one per line.")
    ] = False,
    stream: Annotated[
        bool | None,
        typer.Option(
            "--stream/--no-stream", help="Print text as it is generated [default: when stdout is a terminal]."
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Generate new text from a trained model."""
    with _user_errors():
        request = SampleConfig(
            length=length,
            temperature=0.0 if greedy else temp,
            prime=_read_prime(prime, prime_file),
            seed=seed,
            top_k=top_k,
            top_p=top_p,
            num_samples=num_samples,
        )
        from charlstm import api
        from charlstm import checkpoint as ckpt_lib
        from charlstm.runs import RUNS_DIR

        _use_cache()
        model = api.load(checkpoint if checkpoint is not None else ckpt_lib.most_recent_run(RUNS_DIR))
        best = f", validation loss {model.best_val_loss:.3f}" if model.best_val_loss is not None else ""
        note = f"sampling from {model.path} (step {model.step}{best})"
        streaming = stream if stream is not None else sys.stdout.isatty() and output is None
        if streaming and num_samples == 1 and not as_json and output is None:
            pieces = model.stream(request)  # checks the prime before anything is printed
            if not quiet:
                _say(note)
            _stream_one(pieces, request.prime)
            return
        with _open_output(output) as sink:
            texts = model.generate(request)
            if not quiet:
                _say(note)
            sink.write(_render(texts, request, model, as_json))
        if output is not None and not quiet:
            _say(f"wrote {len(texts)} sample{'s' if len(texts) > 1 else ''} to {output}")


def _render(texts: list[str], request: SampleConfig, model: Model, as_json: bool) -> str:
    if as_json:
        settings = {"checkpoint": str(model.path), "step": model.step, **to_dict(request)}
        del settings["prime"], settings["num_samples"]
        return "".join(
            json.dumps({"sample": i, "prime": request.prime, "text": t, **settings}) + "\n" for i, t in enumerate(texts)
        )
    parts = [_with_newline(request.prime + t) for t in texts]
    if len(parts) > 1:
        parts = [f"----- sample {i + 1} of {len(parts)} -----\n{p}" for i, p in enumerate(parts)]
    return "\n".join(parts)


def _open_output(output: Path | None) -> contextlib.AbstractContextManager[TextIO]:
    """stdout, or the --output file opened now, so that an unwritable path
    is reported before any work is done."""
    if output is None:
        return contextlib.nullcontext(sys.stdout)
    try:
        return output.open("w", encoding="utf-8")
    except OSError as err:
        _fail(f"cannot write --output {output}: {err.strerror}")


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _stream_one(pieces: Iterator[list[str]], prime: str) -> None:
    sys.stdout.write(prime)
    last = prime
    for piece in pieces:
        sys.stdout.write(piece[0])
        sys.stdout.flush()
        last = piece[0] or last
    if not last.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


@app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint directory.")],
    text_file: Annotated[str, typer.Argument(help="UTF-8 text to score.")],
    streams: Annotated[
        int | None,
        typer.Option(help="Parallel streams to read the text in [default: the run's batch size, as in validation]."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Score a text: loss per character, bits per character and perplexity."""
    with _user_errors():
        if streams is not None and streams < 1:
            _fail(f"--streams must be >= 1, got {streams}")
        from charlstm import api, data, reports

        path, _ = data.resolve_corpus_path(text_file)
        text = data.read_corpus(path).text
        _use_cache()
        model = api.load(checkpoint)
        score = model.evaluate(text, streams)
        if as_json:
            sys.stdout.write(json.dumps(reports.score_record(str(path), model.path, score)) + "\n")
        else:
            _print_table(reports.score_table(str(path), model.path, score))


@app.command("runs")
def list_runs(
    runs_dir: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
    as_json: AsJson = False,
) -> None:
    """List training runs: corpus, model, progress, best validation loss."""
    with _user_errors():
        from charlstm import reports, runs

        found = runs.list_runs(runs_dir)
        if as_json:
            sys.stdout.write(json.dumps([reports.run_record(r) for r in found]) + "\n")
        elif not found:
            _say(f"no runs with checkpoints under {runs_dir}/")
        else:
            _print_table(reports.runs_table(found))
            for r in found:
                if r.problem is not None:
                    _say(f"note: {r.path} could not be read: {r.problem}")


@app.command()
def info(
    checkpoint: Annotated[Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint directory.")],
    as_json: AsJson = False,
) -> None:
    """Describe a checkpoint: configuration, vocabulary, parameters, metrics."""
    with _user_errors():
        from charlstm import checkpoint as ckpt_lib
        from charlstm import reports
        from charlstm.config import ModelConfig, from_dict
        from charlstm.model import param_count

        where, meta = ckpt_lib.read_meta(checkpoint)
        params = param_count(from_dict(ModelConfig, meta["model"]))
        if as_json:
            sys.stdout.write(json.dumps({"checkpoint": str(where), "params": params, **meta}) + "\n")
        else:
            _print_table(reports.info_table(where, meta, params))


@app.command()
def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories, overlaid.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("loss.png"),
    width: Annotated[int, typer.Option(help="Image width in pixels.")] = 1200,
    height: Annotated[int, typer.Option(help="Image height in pixels.")] = 450,
) -> None:
    """Plot training and validation loss against steps and time (needs the plot extra)."""
    with _user_errors():
        from charlstm.metrics import read_metrics
        from charlstm.plot import plot_runs

        for run_dir in run_dirs:
            if not run_dir.is_dir():
                _fail(f"not a run directory: {run_dir}")
        written = plot_runs([(str(d), read_metrics(d)) for d in run_dirs], out, width_px=width, height_px=height)
        _say(f"wrote {written}")


@app.callback()
def _global_options(
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Do not use the compilation cache (also: CHARLSTM_NO_CACHE=1).", show_default=False
        ),
    ] = False,
    version: Annotated[bool | None, typer.Option("--version", help="Show the version and exit.", is_eager=True)] = None,
) -> None:
    if version:
        from charlstm import __version__

        _stdout().print(f"charlstm {__version__}", highlight=False)
        raise typer.Exit()
    _options["cache"] = not no_cache


def main() -> None:
    app()
