"""`charlstm tune`: a random or grid hyperparameter search, one run per trial."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from charlstm import units
from charlstm.cli.app import (
    AsJson,
    Quiet,
    Verbose,
    given,
    path_given,
    say,
    stderr,
    use_cache,
    user_errors,
    verbosity,
)
from charlstm.cli.display import QUIET
from charlstm.cli.fitting import print_table
from charlstm.cli.signals import StopFlag
from charlstm.cli.training import (
    CorpusArgument,
    GlobOption,
    SkipBadFilesOption,
    ValFileOption,
    words,
)
from charlstm.config import AUTO_NORM, CELLS, NORMS
from charlstm.config import ModelConfig as _M
from charlstm.config import TrainConfig as _T
from charlstm.errors import shell_word
from charlstm.flags import as_options, option
from charlstm.training.runlog import strict_json


def tune(
    ctx: typer.Context,
    corpus: CorpusArgument,
    glob: GlobOption = None,
    val_file: ValFileOption = None,
    skip_bad_files: SkipBadFilesOption = False,
    trials: Annotated[
        int | None,
        typer.Option(option("trials"), help=f"Trials to run [default: 8; with {option('grid')}, every combination]."),
    ] = None,
    budget_s: Annotated[
        float | None,
        typer.Option(
            option("budget_s"), help="Seconds of training per trial; the step count is fitted to it [default: 60]."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(option("steps"), help="Steps per trial instead of a time budget (results then repeat exactly)."),
    ] = None,
    grid: Annotated[
        bool, typer.Option(option("grid"), help="Grid search over the value lists instead of random.")
    ] = False,
    seed: Annotated[
        int, typer.Option(option("seed"), help="Seed for choosing the trials and for every trial's initialisation.")
    ] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            option("out"), "-o", help="Search directory [default: runs/tune-<corpus>-<time>].", parser=path_given
        ),
    ] = None,
    learning_rate: Annotated[
        str | None,
        typer.Option(
            option("learning_rate"),
            help="Learning rates: a list (2e-3,4e-3) or a log-uniform range lo:hi [1e-3:3e-2].",
        ),
    ] = None,
    hidden_size: Annotated[
        str | None, typer.Option(option("hidden_size"), help="Hidden sizes to try [128,256,384,512].")
    ] = None,
    num_layers: Annotated[str | None, typer.Option(option("num_layers"), help="Layer counts to try [1,2,3].")] = None,
    seq_len: Annotated[str | None, typer.Option(option("seq_len"), help="Sequence lengths to try [32,64,128].")] = None,
    dropout: Annotated[
        str | None, typer.Option(option("dropout"), help="Dropout rates to try [0,0.1,0.2,0.3].")
    ] = None,
    cell: Annotated[
        str,
        typer.Option(option("cell"), autocompletion=words(*CELLS), help="Recurrent cell for every trial: lstm or gru."),
    ] = _M.cell,
    norm: Annotated[
        str,
        typer.Option(
            option("norm"),
            autocompletion=words(*NORMS, AUTO_NORM),
            help="Normalisation inside the cell for every trial: layer or none (auto: as train).",
        ),
    ] = _M.norm,
    embed_dim: Annotated[
        int, typer.Option(option("embed_dim"), help="Character embedding size for every trial.")
    ] = _M.embed_dim,
    batch_size: Annotated[
        int, typer.Option(option("batch_size"), "-b", help="Parallel text streams per step, every trial.")
    ] = _T.batch_size,
    keep_all: Annotated[
        bool, typer.Option(option("keep_all"), help="Keep every trial's checkpoints, not only the best's.")
    ] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Search learning rate, hidden size, layers, sequence length and dropout: each trial
    a short run on the same budget, ranked by validation loss."""
    level = verbosity(quiet, verbose)
    searched = {"learning_rate": learning_rate, "hidden_size": hidden_size, "num_layers": num_layers}
    searched |= {"seq_len": seq_len, "dropout": dropout}
    fixed: dict[str, Any] = {"cell": cell, "norm": norm, "embed_dim": embed_dim, "batch_size": batch_size}
    stop = StopFlag(quiet=level == QUIET and not sys.stderr.isatty())  # on a terminal, answered even under -q
    with user_errors():
        # The handlers go in before JAX is imported, as for `train`: a Ctrl-C
        # during that import is otherwise lost inside it.
        with stop.installed():
            from charlstm import api
            from charlstm.cli import tables
            from charlstm.cli.search_display import SearchDisplay
            from charlstm.runtime.cpu_devices import split_the_cpu
        if stop():
            say("interrupted before the search began; nothing was written")
            raise typer.Exit(stop.exit_status)
        split_the_cpu()  # each trial's batch over two devices, as `charlstm train` splits its own
        use_cache()
        with stop.installed(), SearchDisplay(stderr(), level) as display:
            stop.shown_by = display.notice
            search = api.tune(
                corpus,
                out,
                glob=glob,
                val_file=val_file,
                skip_bad_files=skip_bad_files,
                trials=trials,
                grid=grid,
                steps=steps,
                budget_s=budget_s,
                seed=seed,
                space={field: spec for field, spec in searched.items() if spec is not None},
                keep_all=keep_all,
                on_event=display.handle,
                should_stop=stop,
                **fixed,
            )
        if as_json and search.trials:  # none: stopped before the first, and trials.json was never written
            sys.stdout.write(strict_json(json.loads((search.directory / "trials.json").read_text())) + "\n")
        elif search.trials:
            print_table(tables.trials_table(search.trials))
        if level and search.best is not None:
            best = search.best
            assert best.val_loss is not None  # `Search.best` is a trial that reached one
            # The same text, read the same way, then the fixed options the user
            # gave, the seed among them: every trial started from its initialisation.
            chosen = "".join(f" {option(name)} {value}" for name, value in given(ctx, [*fixed, "seed"]).items())
            say(
                f"best: {best.run_dir} (validation loss {units.fixed(best.val_loss, 4)}); "
                f"all trials in {search.directory / 'trials.json'}\n"
                f"sample it: charlstm sample {shell_word(best.run_dir)}\n"
                f"train it longer: charlstm train {shlex.join(search.reading)} {as_options(best.point)}{chosen}"
            )
        if stop.signal is not None and not search.trials:
            say("search interrupted before its first trial; nothing was written")
            raise typer.Exit(stop.exit_status)
        if stop.signal is not None:
            whole = sum(t.reason != "interrupted" for t in search.trials)  # the last was cut off where it was
            say(f"search interrupted after {whole} of {search.planned} trials")
            raise typer.Exit(stop.exit_status)
