"""Pictures, as PNG files: loss curves of runs (`curves`) and gate
saturation (`saturation`).

matplotlib is the optional `plot` extra: it is imported only when a picture
is drawn, so importing these modules (and starting the CLI) stays cheap.
Figures are built with the object API on an Agg canvas, never through
pyplot, so drawing touches no global figure state and never opens a window.
"""

from __future__ import annotations

from charlstm.errors import CharlstmError

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
