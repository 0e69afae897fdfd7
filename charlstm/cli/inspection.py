"""`charlstm eval`, `inspect`, `runs`, `info` and `plot`: looking at runs and models."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from charlstm.arguments import html_file, writable_place
from charlstm.cli.app import (
    AsJson,
    NewestRunArgument,
    Quiet,
    QuietAlone,
    RunArgument,
    fail,
    path_given,
    say,
    stderr,
    use_cache,
    user_errors,
)
from charlstm.cli.fitting import print_table
from charlstm.cli.format import size
from charlstm.cli.reading_display import scoring_bar
from charlstm.cli.sampling import unescape
from charlstm.cli.training import GlobOption, MovedCorpusOption, SkipBadFilesOption
from charlstm.errors import CharlstmError, shown
from charlstm.flags import option
from charlstm.training.runlog import strict_json

if TYPE_CHECKING:
    from charlstm.api import Model, TextFiles
    from charlstm.introspect.record import Inspection

# A page past this is slow to open (each character carries every unit's
# values: about 4 kB a character for the default model, 2026-12-04).
LARGE_PAGE_BYTES = 50_000_000


# Out of the parameter's annotation, which Typer evaluates as a string: an
# f-string there may hold no backslash before Python 3.12.
_TEXT_HELP = f'Read this text instead of a file (escapes work as in sample\'s {option("prime")}: "ROMEO.\\n").'


def evaluate(
    checkpoint: RunArgument,
    texts: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TEXT",
            help="UTF-8 text files or folders to score, each file a document of its own, as train reads them "
            "[default: the run's validation text].",
            show_default=False,
        ),
    ] = None,
    glob: GlobOption = None,
    skip_bad_files: SkipBadFilesOption = False,
    streams: Annotated[
        int | None,
        typer.Option(
            option("streams"),
            help="Parallel streams to read the text in [default: the run's batch size, as in validation].",
        ),
    ] = None,
    moved_to: MovedCorpusOption = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Score text (files, folders, or the run's validation text): loss per character, bits per character and
    perplexity."""
    with user_errors():
        if streams is not None and streams < 1:
            fail(f"{option('streams')} must be >= 1, got {streams}")
        if any(not text.strip() for text in texts or ()):  # named by the API's argument, "paths", before
            fail("a TEXT given is empty: give a text file or folder")
        from charlstm import api
        from charlstm.cli import records, tables

        if texts and moved_to:
            fail(
                f"{option('corpus')} says where the run's validation text is now, and TEXT is scored instead: give one"
            )
        given = _given_texts(texts, glob, skip_bad_files, quiet)  # a missing file fails before the model is read
        use_cache()
        model = api.load(checkpoint, corpus=moved_to)
        if given:
            source, files = given
            with scoring_bar(stderr(), "scoring", quiet) as progress:
                score = model.evaluate(files, streams, progress=progress)  # in place, from the corpus cache
        else:
            source = _validation_source(model, quiet)
            try:
                with scoring_bar(stderr(), "scoring", quiet) as progress:
                    score = model.evaluate_held_out(streams, progress=progress)  # in place, as validation read it
            except CharlstmError as err:
                fail(f"no text given, and {err}; or give text files or folders to score", err.details)
        if as_json:
            sys.stdout.write(strict_json(records.score_record(source, model.path, score)) + "\n")
        else:
            print_table(tables.score_table(source, model.path, score))


def inspect_model(
    checkpoint: RunArgument,
    text_file: Annotated[
        str | None,
        typer.Argument(
            metavar="TEXTFILE", help="UTF-8 text to read [default: the run's validation text].", show_default=False
        ),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            help=_TEXT_HELP,
            show_default=False,
        ),
    ] = None,
    # The library's default, introspect.record.MAX_CHARS, written out so that --help needs no JAX.
    max_chars: Annotated[
        int,
        typer.Option(
            option("max_chars"), help="Read at most the first N characters (the page grows with N).", metavar="N"
        ),
    ] = 2000,
    out: Annotated[Path, typer.Option(option("out"), "-o", help="HTML page to write.", parser=path_given)] = Path(
        "inspect.html"
    ),
    top: Annotated[int, typer.Option(help="Units listed per feature.", metavar="N")] = 5,
    saturation_png: Annotated[
        Path | None,
        typer.Option(
            help="Also plot gate saturation to this PNG (needs the plot extra).", show_default=False, parser=path_given
        ),
    ] = None,
    moved_to: MovedCorpusOption = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Show what the gates and cells do on a text: an HTML page to explore,
    the units that follow simple text features, and gate saturation."""
    with user_errors():
        if text_file is not None and text is not None:
            fail("give a TEXTFILE or --text, not both")
        if (text_file is not None or text is not None) and moved_to:
            fail(
                f"{option('corpus')} says where the run's validation text is now, and a TEXTFILE or --text is read "
                "instead: give one"
            )
        if top < 1:
            fail(f"--top must be >= 1, got {top}")
        from charlstm import api
        from charlstm.cli import inspect_tables, records
        from charlstm.introspect import record
        from charlstm.plots import check_png_path, require_matplotlib

        record.check_max_chars(max_chars)
        writable_place(html_file(out, option("out")), option("out"))  # before the model is read and run
        if saturation_png is not None:
            require_matplotlib()
            check_png_path(saturation_png, "saturation.png")
            writable_place(saturation_png, "--saturation-png")
        given = _given_text(text_file, text)
        use_cache()
        model = api.load(checkpoint, corpus=moved_to)
        if given:
            source, body = given
            # One document, read as eval reads a file (--text too).
            seen = model.inspect(body if not isinstance(body, str) else [body], max_chars)
        else:
            source = _validation_source(model, quiet)
            try:
                seen = model.inspect_held_out(max_chars)
            except CharlstmError as err:
                fail(f"no text given, and {err}; or give a TEXTFILE or --text", err.details)
        found = model.write_inspection(seen, out, top=top, source=source, saturation_png=saturation_png)
        written, tops, saturation = found.page, found.tops, found.saturation
        if as_json:
            record_ = records.inspection_record(source, model.path, seen, found.correlations, tops, saturation, written)
            sys.stdout.write(strict_json(record_) + "\n")
            if seen.truncated and not quiet:  # the tables would have said so
                more = f"{seen.truncated:,} more were not ({option('max_chars')})"
                say(f"note: read the first {max_chars:,} characters; {more}")
        else:
            print_table(inspect_tables.summary_table(source, model.path, seen, written))
            print_table(inspect_tables.top_units_table(tops, top))
            _say_if_chance(seen, quiet)
            print_table(inspect_tables.saturation_table(saturation))
        if not quiet:
            bytes_ = written.stat().st_size
            say(f"wrote {written} ({size(bytes_)})" + (f" and {saturation_png}" if saturation_png is not None else ""))
            if bytes_ > LARGE_PAGE_BYTES:
                fewer = max(2, int(len(seen.text) * LARGE_PAGE_BYTES / bytes_))
                say(
                    f"note: a page this large takes a browser long to open; {option('max_chars')} {fewer:,} "
                    f"makes one of about {size(LARGE_PAGE_BYTES)}"
                )


def _say_if_chance(seen: Inspection, quiet: bool) -> None:
    """Over a short text the strongest correlations are chance (+1.00 over
    three characters, shown as findings; a walkthrough, 2026-12-05)."""
    from charlstm.introspect.features import SHORT_FOR_CORRELATION, chance_r

    chars = seen.text_chars
    if quiet or chars >= SHORT_FOR_CORRELATION:
        return
    units = sum(states.shape[0] * states.shape[2] for states in seen.states.values())  # (L, N, H) each
    say(
        f"note: over only {chars:,} character{'s' * (chars != 1)}, any of {units:,} units can reach |r| up to about "
        f"{chance_r(units, chars):.2f} by chance alone; read a longer text ({SHORT_FOR_CORRELATION:,} characters "
        "or more) to tell"
    )


def _given_text(text_file: str | None, text: str | None) -> tuple[str, str | TextFiles] | None:
    """Where the text comes from, and the text: --text or the file, if either was given."""
    from charlstm import api

    if text is not None:
        return "--text", unescape(text, "--text")
    if text_file is not None:
        if not text_file.strip():  # Path("") is ".", a folder: " is a folder" said nothing (a review, 2026-12-06)
            fail("a TEXTFILE given is empty: give a text file")
        if Path(text_file).is_dir():
            fail(f"{text_file} is a folder; inspect reads one text file")
        found = api.find_texts(text_file)  # checked in a stream; only what is inspected is read
        return found.sources[0], found
    return None


def _given_texts(
    texts: list[str] | None, glob: str | None, skip_bad_files: bool, quiet: bool
) -> tuple[str, TextFiles] | None:
    """What the texts are called, and the files, if any were given, checked
    (not read into memory); the files left out are named on stderr, as train
    names them."""
    from charlstm import api

    if not texts:
        options = (("glob", glob is not None), ("skip_bad_files", skip_bad_files))
        chosen = [option(name) for name, given in options if given]
        if chosen:
            fail(f"{' and '.join(chosen)} choose{'s' * (len(chosen) == 1)} among the files given: give a folder")
        return None
    with scoring_bar(stderr(), "reading", quiet) as progress:
        found = api.find_texts(texts, glob, skip_bad_files=skip_bad_files, progress=progress)
    for line in found.left_out if not quiet else ():
        say(f"skipped {line}")
    several = len(found.paths) > 1
    source = ", ".join(found.sources) + (f" ({len(found.paths):,} files)" if several else "")
    return source, found


def _validation_source(model: Model, quiet: bool) -> str:
    """Say which text the run validated on (the held-out end of its corpus,
    or its --val-file texts), which the model never trained on; its name."""
    val_files = [shown(f) for f in model.corpus.get("val_files") or ()]
    corpus = ", ".join(val_files) if val_files else shown(model.corpus_path)
    if not quiet:
        say(f"no text given: reading the run's validation text, {model.validation_description()}, from {corpus}")
    return f"{corpus} (validation text)"


def list_runs(
    runs_dir: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="Folder holding run directories.", parser=path_given)
    ] = Path("runs"),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """List training runs: corpus, model, progress, best validation loss."""
    with user_errors():
        from charlstm import api
        from charlstm.cli import records, tables

        found = api.list_runs(runs_dir)
        if as_json:
            sys.stdout.write(strict_json([records.run_record(r) for r in found]) + "\n")
        elif not found:
            if not quiet:
                say(f"no runs with checkpoints under {runs_dir}/")
        else:
            print_table(tables.runs_table(found, runs_dir))
            for r in found if not quiet else ():
                if r.problem is not None and r.state == "training":
                    say(f"note: {r.path} is training, before its first checkpoint")
                elif r.problem is not None:
                    say(f"note: {r.path} could not be read: {r.problem}")
                for damaged in (r.damaged_latest, r.damaged_best) if r.problem is None else ():
                    if damaged is not None:
                        say(f"note: {damaged}")  # it names the checkpoint, and how to go on
                if r.problem is None and r.guessing is not None:
                    say(f"note: {r.path}: {r.guessing}")


def info(
    checkpoint: NewestRunArgument = None,
    as_json: AsJson = False,
) -> None:
    """Describe a checkpoint: configuration, vocabulary, parameters, metrics."""
    with user_errors():
        from charlstm import api
        from charlstm.cli import tables

        found = api.describe(checkpoint)
        meta = found.meta
        if as_json:
            record = {
                "checkpoint": str(meta.path),
                "params": found.params,
                "warmup_steps_used": found.warmup_steps,
                "latest_step": found.latest_step,  # where resume goes on
                "sessions": list(found.sessions),  # what each session of the run trained with, oldest first
            }
            # The corpus where it is now, if a resume with --corpus found it elsewhere since this checkpoint.
            sys.stdout.write(
                strict_json({**record, **meta.raw, **({"corpus": meta.corpus} if meta.corpus else {})}) + "\n"
            )
        else:
            print_table(tables.info_table(found))


def plot(
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="RUN",
            help="Runs to overlay (a search's folder: its trials) [default: the most recent run under runs/].",
            show_default=False,
            parser=path_given,
        ),
    ] = None,
    gradients: Annotated[
        bool,
        typer.Option(
            "--gradients",
            help=f"Plot the gradient norms instead, globally and layer by layer, with the run's {option('grad_clip')} "
            "and the share of steps clipped: a panel a run, at most 6.",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            option("out"),
            "-o",
            help="PNG file to write [default: loss.png, or gradients.png].",
            show_default=False,
            parser=path_given,
        ),
    ] = None,
    width: Annotated[int, typer.Option(help="Image width in pixels.")] = 1200,
    height: Annotated[
        int | None,
        typer.Option(
            help="Image height in pixels [default: 450, or 330 a row of gradient panels].",
            show_default=False,
        ),
    ] = None,
    quiet: QuietAlone = False,
) -> None:
    """Plot training and validation loss against steps and time, or the gradient norms (needs the plot extra)."""
    with user_errors():
        from charlstm import api

        if gradients:
            written = api.plot_gradients(run_dirs, out or Path("gradients.png"), width_px=width, height_px=height)
        else:
            tall = 450 if height is None else height
            written = api.plot_runs(run_dirs, out or Path("loss.png"), width_px=width, height_px=tall)
        if not quiet:
            say(f"wrote {written}")
