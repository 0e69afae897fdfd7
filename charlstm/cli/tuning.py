"""`charlstm tune`: a random or grid hyperparameter search, one run per trial."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from charlstm.cli.app import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    AsJson,
    Quiet,
    Verbose,
    print_table,
    say,
    stderr,
    use_cache,
    user_errors,
)
from charlstm.cli.training import _StopFlag, _verbosity
from charlstm.config import ModelConfig as _M
from charlstm.config import TrainConfig as _T


def tune(
    corpus: Annotated[str, typer.Argument(help="UTF-8 text file to learn from (or a shipped corpus's name).")],
    trials: Annotated[
        int | None, typer.Option(help="Trials to run [default: 8; with --grid, every combination].")
    ] = None,
    budget_s: Annotated[
        float | None,
        typer.Option("--budget-s", help="Seconds of training per trial; the step count is fitted to it [default: 60]."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Steps per trial instead of a time budget (results then repeat exactly).")
    ] = None,
    grid: Annotated[bool, typer.Option("--grid", help="Grid search over the value lists instead of random.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for choosing the trials and for every trial's initialisation.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Search directory [default: runs/tune-<corpus>-<time>].")
    ] = None,
    lr: Annotated[
        str | None,
        typer.Option("--lr", help="Learning rates: a list (2e-3,4e-3) or a log-uniform range lo:hi [1e-3:3e-2]."),
    ] = None,
    hidden: Annotated[str | None, typer.Option(help="Hidden sizes to try [128,256,384,512].")] = None,
    layers: Annotated[str | None, typer.Option(help="Layer counts to try [1,2,3].")] = None,
    seq_len: Annotated[str | None, typer.Option("--seq-len", help="Sequence lengths to try [32,64,128].")] = None,
    dropout: Annotated[str | None, typer.Option(help="Dropout rates to try [0,0.1,0.2,0.3].")] = None,
    cell: Annotated[str, typer.Option(help="Recurrent cell for every trial: lstm or gru.")] = _M.cell,
    norm: Annotated[
        str, typer.Option(help="Normalisation inside the cell for every trial: layer or none (auto: as `train`).")
    ] = _M.norm,
    embed: Annotated[int, typer.Option(help="Character embedding size for every trial.")] = _M.embed_dim,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="Parallel text streams per step, every trial.")
    ] = _T.batch_size,
    keep_all: Annotated[
        bool, typer.Option("--keep-all", help="Keep every trial's checkpoints, not only the best's.")
    ] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Search learning rate, hidden size, layers, sequence length and dropout: each trial
    a short run on the same budget, ranked by validation loss."""
    level = _verbosity(quiet, verbose)
    with user_errors():
        from charlstm import data, reports, runs, tune
        from charlstm.config import ModelConfig, TrainConfig
        from charlstm.errors import ConfigError
        from charlstm.fmt import point_text
        from charlstm.progress import SearchDisplay

        if steps is not None and budget_s is not None:
            raise ConfigError("give --steps or --budget-s, not both")
        if steps is None and budget_s is None:
            budget_s = 60.0
        if (steps is not None and steps < 1) or (budget_s is not None and budget_s <= 0):
            raise ConfigError("the budget per trial must be positive")
        if trials is not None and trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {trials}")
        specs = {"lr": lr, "hidden": hidden, "layers": layers, "seq_len": seq_len, "dropout": dropout}
        space = tuple(d if specs[d.name] is None else tune.parse_dimension(d, specs[d.name] or "") for d in tune.SPACE)
        points = (
            tune.grid_trials(space, trials, seed)
            if grid
            else tune.random_trials(space, 8 if trials is None else trials, seed)
        )
        model: dict[str, Any] = {"embed_dim": embed, "cell": cell, "norm": norm}
        ModelConfig(vocab_size=1, **model)  # refuse a bad --cell, --norm or --embed before any trial
        train = {"batch_size": batch_size, "seed": seed}
        TrainConfig(**train)
        path, _ = data.resolve_corpus_path(corpus)
        directory = out if out is not None else runs.RUNS_DIR / f"tune-{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        settings = {
            "corpus": str(path.resolve()),
            "kind": "grid" if grid else "random",
            "trials": len(points),
            "seed": seed,
            "steps": steps,
            "budget_s": budget_s,
            "space": {d.name: list(d.log_range or d.values) for d in space},
            "range": [d.name for d in space if d.log_range is not None],
            "fixed": {**model, **train},
        }
        if level:
            say(f"search directory: {directory}; {len(points)} {settings['kind']} trials")
        use_cache()
        stop = _StopFlag()
        results = []
        with stop.installed(), SearchDisplay(stderr(), level) as display:
            for result in tune.search(
                path,
                directory,
                points,
                model,
                train,
                steps=steps,
                budget_s=budget_s,
                keep_all=keep_all,
                settings=settings,
                on_event=display.handle,
                should_stop=stop,
            ):
                results.append(result)
        ranked = tune.ranked(results)
        if as_json:
            sys.stdout.write(json.dumps(json.loads((directory / "trials.json").read_text())) + "\n")
        elif ranked:
            print_table(reports.trials_table(ranked))
        best = ranked[0] if ranked and ranked[0].val_loss is not None else None
        if level and best is not None:
            given = [
                ("--cell", cell, _M.cell),
                ("--norm", norm, _M.norm),
                ("--embed", embed, _M.embed_dim),
                ("-b", batch_size, _T.batch_size),
            ]
            fixed = "".join(f" {flag} {value}" for flag, value, default in given if value != default)
            say(
                f"best: {best.run_dir} (validation loss {best.val_loss:.4f}); "
                f"all trials in {directory / 'trials.json'}\n"
                f"sample it: charlstm sample --checkpoint {best.run_dir}\n"
                f"train it longer: charlstm train {corpus} {point_text(best.point)}{fixed}"
            )
        if stop.signal is not None:
            say(f"search interrupted after {len(results)} of {len(points)} trials")
            raise typer.Exit(EXIT_SIGINT if stop.signal == signal.SIGINT else EXIT_SIGTERM)
