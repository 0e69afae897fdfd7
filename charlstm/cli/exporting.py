"""`charlstm export`: a page that writes in the browser, and portable weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.app import NewestRunArgument, Quiet, fail, say, user_errors
from charlstm.cli.format import checkpoint_text, size
from charlstm.flags import option


def export(
    checkpoint: NewestRunArgument = None,
    html: Annotated[
        Path | None,
        typer.Option(
            option("html"), help="Write one self-contained HTML page that runs the model in a browser, offline."
        ),
    ] = None,
    half: Annotated[
        bool, typer.Option(option("half"), help="Store the page's weights as float16: half the size.")
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            option("weights"),
            help="Write DIR/model.safetensors and DIR/model.json: the parameters, configuration and vocabulary.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Take a trained model anywhere: an HTML page that writes, or portable weights."""
    with user_errors():
        if html is None and weights is None:
            fail(f"nothing to export: give {option('html')} PAGE.html, {option('weights')} DIR, or both")
        if half and html is None:
            fail(f"{option('half')} applies to the page: give {option('html')} PAGE.html too")
        from charlstm import api

        model = api.load(checkpoint)
        # Which model, as sample says (without RUN it is the newest run's),
        # once the first file is written: a refused path stays one line.
        source = f"model: {checkpoint_text(model)}"
        if html is not None:
            page = model.export_html(html, half=half)
            if not quiet:
                say(source)
                say(
                    f"wrote {page.path}: {size(page.bytes)}, {page.parameters:,} parameters in "
                    f"{'float16' if half else 'float32'} ({size(page.weight_bytes)} before base64); "
                    "open it in a browser, no network needed"
                )
        if weights is not None:
            out = model.export_weights(weights)
            if not quiet:
                if html is None:
                    say(source)
                say(
                    f"wrote {out.weights} ({out.tensors} tensors, {out.parameters:,} parameters, "
                    f"{size(out.bytes)}) and {out.meta}"
                )
