"""Gate saturation drawn as Karpathy, Johnson and Fei-Fei (2015) plot it:
one panel per gate, one point per unit at (fraction of steps left-saturated,
fraction right-saturated), coloured by layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from charlstm.introspect.record import LABELS, SATURATED_HIGH, SATURATED_LOW
from charlstm.plots import DPI, PlotError, check_png_path, require_matplotlib, write_png

PANEL_PX = 320  # each panel's width; the picture is one row of panels


def plot_saturation(saturation: Mapping[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    """saturation: gate -> (left, right), each (L, H), as
    `Inspection.saturation()` gives it. Writes the PNG `out`; returns it."""
    if not saturation:
        raise PlotError("no gates to plot")
    check_png_path(out, "saturation.png")
    require_matplotlib()
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    gates = list(saturation)
    layers = next(iter(saturation.values()))[0].shape[0]
    palette = colormaps["tab10"]
    width_in, height_in = PANEL_PX * len(gates) / DPI, (PANEL_PX + 60) / DPI
    figure = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained", facecolor="white")
    panels = np.atleast_1d(figure.subplots(1, len(gates), sharex=True, sharey=True))
    for axes, gate in zip(panels, gates, strict=True):
        left, right = saturation[gate]  # (L, H) each
        # A unit cannot spend more than all steps saturated: points lie below x + y = 1.
        axes.plot([0, 1], [1, 0], color="0.8", linewidth=0.8, zorder=0)
        for layer in range(layers):
            axes.scatter(
                left[layer], right[layer], s=10, alpha=0.6, color=palette(layer % palette.N), label=f"layer {layer}"
            )
        axes.set_title(f"{gate}: {LABELS[gate]}", fontsize="medium")
        axes.set_xlim(-0.02, 1.02)
        axes.set_ylim(-0.02, 1.02)
        axes.set_aspect("equal")
        axes.set_xlabel(f"fraction left-saturated (< {SATURATED_LOW})")
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    panels[0].set_ylabel(f"fraction right-saturated (> {SATURATED_HIGH})")
    if layers > 1:
        panels[-1].legend(loc="upper right", fontsize="small", frameon=False)
    return write_png(figure, out)
