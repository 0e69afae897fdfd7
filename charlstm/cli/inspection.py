"""`charlstm eval`, `inspect`, `runs`, `info` and `plot`: looking at runs and models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from charlstm.cli.app import AsJson, fail, print_table, say, use_cache, user_errors

if TYPE_CHECKING:
    from charlstm.api import Model


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


def inspect_model(
    checkpoint: Annotated[Path, typer.Argument(help="Run directory (its best checkpoint) or checkpoint directory.")],
    text_file: Annotated[
        str | None,
        typer.Argument(help="UTF-8 text to read [default: the run's validation text].", show_default=False),
    ] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="Read this text instead of a file.", show_default=False)
    ] = None,
    # The library's default, introspect.MAX_CHARS, written out so that --help needs no JAX.
    max_chars: Annotated[
        int, typer.Option(help="Read at most the first N characters (the page grows with N).", metavar="N")
    ] = 2000,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML page to write.")] = Path("inspect.html"),
    top: Annotated[int, typer.Option(help="Units listed per feature.", metavar="N")] = 5,
    saturation_png: Annotated[
        Path | None,
        typer.Option(help="Also plot gate saturation to this PNG (needs the plot extra).", show_default=False),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show what the gates and cells do on a text: an HTML page to explore,
    the units that follow simple text features, and gate saturation."""
    with user_errors():
        if text_file is not None and text is not None:
            fail("give a TEXTFILE or --text, not both")
        if top < 1:
            fail(f"--top must be >= 1, got {top}")
        from charlstm import api, features, inspect_page, inspect_plot, inspect_report, introspect

        introspect.check_max_chars(max_chars)
        if saturation_png is not None:
            inspect_plot.require_matplotlib()
        use_cache()
        model = api.load(checkpoint)
        source, body = _text_to_inspect(model, text_file, text)
        seen = model.inspect(body, max_chars)
        correlations = features.correlations(seen)
        tops = features.top_units(correlations, top)
        saturation = seen.saturation()
        try:
            page = inspect_page.write_page(out, seen, tops, source=source, checkpoint=str(model.path))
            if saturation_png is not None:
                inspect_plot.plot_saturation(saturation, saturation_png)
        except OSError as err:
            fail(f"cannot write {err.filename}: {err.strerror}")
        if as_json:
            record = inspect_report.inspection_record(source, model.path, seen, correlations, tops, saturation, page)
            sys.stdout.write(json.dumps(record) + "\n")
            if seen.truncated:  # the tables would have said so
                say(f"note: read the first {max_chars:,} characters; {seen.truncated:,} more were not (--max-chars)")
        else:
            print_table(inspect_report.summary_table(source, model.path, seen, page))
            print_table(inspect_report.top_units_table(tops, top))
            print_table(inspect_report.saturation_table(saturation))
        say(f"wrote {page}" + (f" and {saturation_png}" if saturation_png is not None else ""))


def _text_to_inspect(model: Model, text_file: str | None, text: str | None) -> tuple[str, str]:
    """Where the text comes from, and the text: --text, the file, or else
    the held-out tail of the run's own corpus, which the model never trained on."""
    from charlstm import data

    if text is not None:
        return "--text", text
    if text_file is not None:
        path, _ = data.resolve_corpus_path(text_file)
        return str(path), data.read_corpus(path).text
    corpus = Path(model.corpus_path)
    if not corpus.is_file():
        fail(
            f"no text given, and the run's corpus {corpus} is not there to take its validation text from: "
            "give a TEXTFILE or --text"
        )
    whole = data.read_corpus(corpus).text
    held_out = int(len(whole) * model.train_config.val_fraction)
    say(f"no text given: reading the run's validation text, the last {held_out:,} characters of {corpus}")
    return f"{corpus} (validation text)", whole[len(whole) - held_out :]


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
