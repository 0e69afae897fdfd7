"""`charlstm export`: a page that writes in the browser, and portable weights."""

from __future__ import annotations

from typing import Annotated

import typer

from charlstm.arguments import html_file, weights_directory, writable_place
from charlstm.cli.app import NewestRunArgument, QuietAlone, fail, say, user_errors
from charlstm.cli.format import checkpoint_text, size
from charlstm.flags import option


def export(
    checkpoint: NewestRunArgument = None,
    html: Annotated[
        str | None,  # as given: an empty one (an unset "$OUT") is refused, not read as "."
        typer.Option(
            option("html"),
            help="Write one self-contained HTML page that runs the model in a browser, offline.",
            metavar="PAGE.html",
        ),
    ] = None,
    half: Annotated[
        bool, typer.Option(option("half"), help="Store the page's weights as float16: half the size.")
    ] = False,
    weights: Annotated[
        str | None,
        typer.Option(
            option("weights"),
            help="Write DIR/model.safetensors and DIR/model.json: the parameters, configuration and vocabulary.",
            metavar="DIR",
        ),
    ] = None,
    quiet: QuietAlone = False,
) -> None:
    """Take a trained model anywhere: an HTML page that writes, or portable weights."""
    with user_errors():
        if html is None and weights is None:
            fail(f"nothing to export: give {option('html')} PAGE.html, {option('weights')} DIR, or both")
        if half and html is None:
            fail(f"{option('half')} applies to the page: give {option('html')} PAGE.html too")
        # Both places checked before either is written: a refused one leaves nothing behind.
        page_path = html_file(html, option("html")) if html is not None else None
        weights_dir = weights_directory(weights, option("weights")) if weights is not None else None
        if page_path is not None and weights_dir is not None and page_path.resolve() == weights_dir.resolve():
            fail(f"{option('html')} and {option('weights')} name the same place, {page_path}: give each its own")
        if page_path is not None:
            writable_place(page_path, option("html"))
        if weights_dir is not None:  # the files it writes there
            writable_place(weights_dir / "model.json", option("weights"))
        from charlstm import api

        model = api.load(checkpoint)
        # Which model, as sample says (without RUN it is the newest run's),
        # once the first file is written: a refused path stays one line.
        source = f"model: {checkpoint_text(model)}"
        if page_path is not None:
            page = model.export_html(page_path, half=half)
            if not quiet:
                say(source)
                say(
                    f"wrote {page.path}: {size(page.bytes)}, {page.parameters:,} parameters in "
                    f"{'float16' if half else 'float32'} ({size(page.weight_bytes)} before base64); "
                    "open it in a browser, no network needed"
                )
        if weights_dir is not None:
            out = model.export_weights(weights_dir)
            if not quiet:
                if page_path is None:
                    say(source)
                say(
                    f"wrote {out.weights} ({out.tensors} tensors, {out.parameters:,} parameters, "
                    f"{size(out.bytes)}) and {out.meta}"
                )
