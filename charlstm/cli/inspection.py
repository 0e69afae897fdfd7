"""`charlstm eval`, `runs`, `info` and `plot`: looking at runs and models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.app import AsJson, fail, print_table, say, use_cache, user_errors


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
    with user_errors():
        if streams is not None and streams < 1:
            fail(f"--streams must be >= 1, got {streams}")
        from charlstm import api, data, reports

        path, _ = data.resolve_corpus_path(text_file)
        text = data.read_corpus(path).text
        use_cache()
        model = api.load(checkpoint)
        score = model.evaluate(text, streams)
        if as_json:
            sys.stdout.write(json.dumps(reports.score_record(str(path), model.path, score)) + "\n")
        else:
            print_table(reports.score_table(str(path), model.path, score))


def list_runs(
    runs_dir: Annotated[Path, typer.Argument(help="Folder holding run directories.")] = Path("runs"),
    as_json: AsJson = False,
) -> None:
    """List training runs: corpus, model, progress, best validation loss."""
    with user_errors():
        from charlstm import reports, runs

        found = runs.list_runs(runs_dir)
        if as_json:
            sys.stdout.write(json.dumps([reports.run_record(r) for r in found]) + "\n")
        elif not found:
            say(f"no runs with checkpoints under {runs_dir}/")
        else:
            print_table(reports.runs_table(found))
            for r in found:
                if r.problem is not None:
                    say(f"note: {r.path} could not be read: {r.problem}")


def info(
    checkpoint: Annotated[Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint directory.")],
    as_json: AsJson = False,
) -> None:
    """Describe a checkpoint: configuration, vocabulary, parameters, metrics."""
    with user_errors():
        from charlstm import checkpoint as ckpt_lib
        from charlstm import reports
        from charlstm.config import ModelConfig, from_dict
        from charlstm.model import param_count

        where, meta = ckpt_lib.read_meta(checkpoint)
        try:
            params = param_count(from_dict(ModelConfig, meta["model"]))
            table = reports.info_table(where, meta, params)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            fail(f"checkpoint {where} has invalid metadata: {type(err).__name__}: {err}")
        if as_json:
            sys.stdout.write(json.dumps({"checkpoint": str(where), "params": params, **meta}) + "\n")
        else:
            print_table(table)


def plot(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run directories, overlaid.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("loss.png"),
    width: Annotated[int, typer.Option(help="Image width in pixels.")] = 1200,
    height: Annotated[int, typer.Option(help="Image height in pixels.")] = 450,
) -> None:
    """Plot training and validation loss against steps and time (needs the plot extra)."""
    with user_errors():
        from charlstm.metrics import read_metrics
        from charlstm.plot import plot_runs

        for run_dir in run_dirs:
            if not run_dir.is_dir():
                fail(f"not a run directory: {run_dir}")
        written = plot_runs([(str(d), read_metrics(d)) for d in run_dirs], out, width_px=width, height_px=height)
        say(f"wrote {written}")
