"""Pictures, as PNG files: loss curves of runs (`curves`), their gradient
norms layer by layer (`gradients`) and gate saturation (`saturation`).

matplotlib is the optional `plot` extra: it is imported only when a picture
is drawn, so importing these modules (and starting the CLI) stays cheap.
Figures are built with the object API on an Agg canvas, never through
pyplot, so drawing touches no global figure state and never opens a window.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlstm.errors import CharlstmError, as_text
from charlstm.flags import flag
from charlstm.text.saving import save_whole

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

DPI = 100  # pixels an inch, for every picture: sizes are asked for and set in pixels


class PlotError(CharlstmError):
    """A picture cannot be drawn: no data, a bad size, or no matplotlib."""


def require_matplotlib() -> None:
    """Raise PlotError at once if matplotlib is missing, before the work whose result it would draw."""
    # Import the top-level package first: a submodule already in sys.modules
    # would import even when the package itself is unavailable.
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("plotting needs matplotlib, which is not installed: pip install 'charlstm[plot]'") from None


# Larger images take gigabytes to draw (100,000 x 100,000 ran out of memory).
MAX_PIXELS = 100_000_000


def plain(label: str) -> str:
    """A label drawn as it is written: matplotlib reads text between two `$`
    as TeX (`runs/a$\\frac{$b` raised a parse error), and a control or
    format character (an escape sequence in a layer's name in a shared run's
    log) has no glyph: it is drawn as its escape, not warned of by matplotlib."""
    return as_text(label).replace("$", r"\$")


def logged_number(value: Any) -> float:
    """A number as metrics.jsonl logs it; null (not finite, JSON has no NaN),
    a boolean or anything unreadable is NaN: a gap in a line."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def check_png_path(out: Path, example: str = "loss.png") -> None:
    """Raise PlotError unless `out` names a PNG file that could be written
    (a folder is told to give a file in it, such as `example`)."""
    if out.is_dir():
        raise PlotError(f"{out} is a directory; give the PNG file to write, such as {out / example}")
    if out.suffix.lower() != ".png":
        raise PlotError(f"the plot is a PNG image: give a file name ending in .png, not {out.name}")


def check_size(width_px: int, height_px: int, min_width_in: float, min_height_in: float, what: str) -> None:
    """Raise PlotError for a picture too large to draw or too small to fit `what`."""
    for name, value in (("width_px", width_px), ("height_px", height_px)):
        if isinstance(value, bool) or not isinstance(value, int):  # a str from a caller, or True
            raise PlotError(f"{flag(name)} must be a whole number of pixels, got {value!r}")
    if width_px * height_px > MAX_PIXELS:
        raise PlotError(f"{width_px}x{height_px} pixels is too large to draw; at most {MAX_PIXELS // 10**6} million")
    min_width, min_height = math.ceil(min_width_in * DPI), math.ceil(min_height_in * DPI)
    if width_px < min_width or height_px < min_height:
        raise PlotError(
            f"the image must be at least {min_width}x{min_height} pixels (width x height) to fit {what}, "
            f"not {width_px}x{height_px}"
        )


def legend_above(
    figure: Figure,
    tries: Sequence[tuple[Sequence[Artist], int, str]],
    max_height_share: float,
    **options: object,
) -> Legend | None:
    """The first of `tries` ((handles, columns, font size) each) whose legend,
    above the panels, fits the figure's width and `max_height_share` of its
    height; None, with no legend left, where none does."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    for handles, columns, fontsize in tries:
        legend = figure.legend(
            handles=handles,
            labels=[str(handle.get_label()) for handle in handles],
            loc="outside upper center",
            ncols=columns,
            fontsize=fontsize,
            frameon=False,
            **options,
        )
        extent = legend.get_window_extent(renderer)
        if extent.width <= figure.bbox.width and extent.height <= max_height_share * figure.bbox.height:
            return legend
        legend.remove()
    return None


def write_png(figure: Figure, out: Path) -> Path:
    """Render `figure` to the PNG `out` at exactly the figure's size in pixels; returns `out`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # print_png rather than savefig: savefig honours a user's rc settings
    # such as savefig.bbox = tight, which would change the image size.
    save_whole(out, FigureCanvasAgg(figure).print_png, error=PlotError)  # a failure leaves an earlier image as it was
    return out
