"""Gradient norms from runs' `metrics.jsonl` records, drawn to a PNG.

One panel a run, against step on a log axis: the global norm (the one
`--clip` compares) and each layer's, from the embedding through the
recurrent layers to the head, coloured from dark (input) to light
(output); the `--clip` threshold as a dashed line; the share of steps
whose gradients were clipped shaded behind; and the steps a gradient
warning was given marked and named.

What to look for: exploding gradients are spikes far above the clip line,
most steps clipping a clip line below the usual norm, and vanishing ones
the first recurrent layer's line far below the head's and falling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlstm.flags import option
from charlstm.plots import (
    DPI,
    PlotError,
    check_png_path,
    check_size,
    legend_above,
    logged_number,
    plain,
    require_matplotlib,
    write_png,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# A run's label, its metrics records and its --clip (None: unknown).
GradientRun = tuple[str, Sequence[Mapping[str, Any]], float | None]

# A panel a run: more than this would leave each too small to read.
MAX_RUNS = 6
PANEL_HEIGHT_PX = 330  # a row of panels, when no height is asked for
MIN_PANEL_WIDTH_IN, MIN_PANEL_HEIGHT_IN = 3.2, 2.0
# The warnings (health.py) that are about gradients, marked on the panels.
GRADIENT_WARNINGS = ("exploding", "clipping", "vanishing")
_CLIPPED_SHADE = "0.88"
# The legend's names of what every panel draws besides the layers.
GLOBAL, CLIP, CLIPPED = "all layers (global)", f"{option('grad_clip')} (the threshold)", "share of steps clipped"
# A legend above the panels may take at most this share of the height.
_MAX_LEGEND_HEIGHT = 0.35


def plot_gradients(
    runs: Sequence[GradientRun], out: Path, *, width_px: int = 1200, height_px: int | None = None
) -> Path:
    """Draw the runs' gradient norms, a panel each, to the PNG `out` of
    `width_px` x `height_px` pixels (height: PANEL_HEIGHT_PX a row of
    panels when None); returns `out`. Raises PlotError if a run logged no
    gradient norms, there are more than MAX_RUNS, the size is too small,
    or matplotlib is not installed."""
    check_png_path(out, "gradients.png")
    return write_png(build_gradient_figure(runs, width_px=width_px, height_px=height_px), out)


def build_gradient_figure(runs: Sequence[GradientRun], *, width_px: int = 1200, height_px: int | None = None) -> Figure:
    """The figure `plot_gradients` draws, not yet rendered."""
    columns, rows = _grid(runs)
    height_px = PANEL_HEIGHT_PX * rows if height_px is None else height_px
    check_size(
        width_px,
        height_px,
        MIN_PANEL_WIDTH_IN * columns,
        MIN_PANEL_HEIGHT_IN * rows,
        "a run's panel" if len(runs) == 1 else f"{len(runs)} runs' panels",
    )
    require_matplotlib()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained", facecolor="white")
    panels = figure.subplots(rows, columns, sharex=False, sharey=False, squeeze=False).ravel()
    layers = _layer_order({name for _label, records, _clip in runs for name in _layers(records)})
    colours = _layer_colours(layers)
    for axes, (label, records, clip) in zip(panels, runs, strict=False):
        _draw_run(axes, label, sorted(records, key=lambda record: record["step"]), clip, colours)
    for axes in panels[len(runs) :]:
        axes.set_visible(False)
    handles = [h for axes in figure.axes if axes.get_visible() for h in [*axes.get_lines(), *axes.collections]]
    seen: dict[str, Any] = {}
    for handle in handles:
        seen.setdefault(str(handle.get_label()), handle)
    order = [GLOBAL, *layers, CLIP, CLIPPED]
    shown = [seen[name] for name in order if name in seen] + [
        h for name, h in seen.items() if name not in order and not name.startswith("_")
    ]
    # One row where the picture is wide enough, fewer columns and a smaller font where not.
    tries = [(shown, columns, "small") for columns in sorted({min(len(shown), 8), 4, 3}, reverse=True)]
    tries += [(shown, columns, "x-small") for columns in (3, 2, 1)]
    if legend_above(figure, tries, _MAX_LEGEND_HEIGHT) is None:
        legend = panels[0].legend(handles=shown, loc="upper right", fontsize="x-small", framealpha=0.9)
        legend.set_in_layout(False)
    return figure


def has_gradients(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run's metrics hold a gradient norm to draw."""
    return any("grad_norm" in record for record in records)


def _grid(runs: Sequence[GradientRun]) -> tuple[int, int]:
    """(columns, rows) of panels; checks the runs first."""
    if not runs:
        raise PlotError("nothing to plot: no runs were given")
    if len(runs) > MAX_RUNS:
        raise PlotError(
            f"gradient norms are drawn a panel a run, at most {MAX_RUNS} runs at once, not {len(runs)}: "
            "name fewer runs (a search's trials are the folders in it)"
        )
    for label, records, _clip in runs:
        if not has_gradients(records):
            raise PlotError(
                f"run {label} has no gradient norms to plot yet (its metrics.jsonl is missing or empty, or it "
                "stopped before its first logged step)"
            )
    columns = 1 if len(runs) == 1 else 2
    return columns, math.ceil(len(runs) / columns)


def _layers(records: Sequence[Mapping[str, Any]]) -> set[str]:
    return {name for record in records if isinstance(record.get("grad_norms"), dict) for name in record["grad_norms"]}


def _layer_order(names: set[str]) -> list[str]:
    """Input to output: the embedding, the recurrent layers by depth, the head."""

    def depth(name: str) -> tuple[int, int, str]:
        if name == "embed":
            return (0, 0, name)
        if name == "head":
            return (2, 0, name)
        stem, _, index = name.rpartition("_")
        return (1, int(index), stem) if index.isdigit() else (1, 0, name)

    return sorted(names, key=depth)


def _layer_colours(layers: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    # Dark at the input, light at the output, so that depth reads at a glance;
    # viridis's last yellow is too faint on white, hence 0.85.
    palette = colormaps["viridis"]
    span = max(len(layers) - 1, 1)
    return {name: palette(0.85 * i / span) for i, name in enumerate(layers)}


def _norm(value: Any) -> float:
    """A logged norm for a log axis; null (not finite), zero or unreadable is a gap."""
    norm = logged_number(value)
    return norm if math.isfinite(norm) and norm > 0 else math.nan


def _draw_run(
    axes: Axes, label: str, records: list[Mapping[str, Any]], clip: float | None, colours: dict[str, Any]
) -> None:
    logged = [record for record in records if "grad_norm" in record]
    steps = [record["step"] for record in logged]
    # The clipped share first, on an axis of its own behind the norms.
    fractions = [logged_number(record.get("clipped_fraction")) for record in logged]
    if any(f > 0 for f in fractions):  # NaN (a line without it) is not
        share = axes.twinx()
        percent = [100 * f if math.isfinite(f) else 0.0 for f in fractions]
        # A line's share covers the steps since the line before it: the first
        # line's as many before it as the lines are apart (from step 0 at most).
        start = max(0, 2 * steps[0] - steps[1]) if len(steps) > 1 else 0
        share.fill_between([start, *steps], [percent[0], *percent], step="pre", color=_CLIPPED_SHADE, linewidth=0)
        share.collections[-1].set_label(CLIPPED)
        share.set_ylim(0, 100)
        share.set_ylabel("steps clipped (%)", color="0.45")
        share.tick_params(colors="0.45")
        axes.set_zorder(share.get_zorder() + 1)  # the norms above the shade
        axes.patch.set_visible(False)
    marker = "o" if len(steps) < 3 else None  # a line of one point (a run just started) shows nothing
    for name, colour in colours.items():
        norms = [_norm((record.get("grad_norms") or {}).get(name)) for record in logged]
        if any(math.isfinite(n) for n in norms):
            axes.plot(steps, norms, color=colour, linewidth=1.0, label=plain(name), marker=marker, markersize=3)
    global_norms = [_norm(r["grad_norm"]) for r in logged]
    axes.plot(steps, global_norms, color="black", linewidth=1.6, label=GLOBAL, marker=marker, markersize=4)
    line = clip if clip is not None and math.isfinite(clip) else None  # --clip inf: nothing is clipped, no line
    if line is not None:
        axes.axhline(line, color="tab:red", linestyle="--", linewidth=1.0, label=CLIP)
    _mark_warnings(axes, records)
    axes.set_yscale("log")
    title = plain(label) if line is None else f"{plain(label)} ({option('grad_clip')} {line:g})"
    axes.set_title(title, fontsize="medium")
    axes.set_xlabel("step")
    axes.set_ylabel("gradient norm, before clipping")
    axes.set_xlim(left=0)
    axes.grid(True, which="major", color="0.9", linewidth=0.8)
    axes.spines["top"].set_visible(False)


# How health.py's gradient warnings begin: for runs logged before
# metrics.jsonl named each warning's kind.
_OPENINGS = {"gradients exploding": "exploding", "gradients vanishing": "vanishing", "every step clips": "clipping"}


def _kind(message: Any) -> str | None:
    """A logged warning's kind, read from its words."""
    text = str(message)
    return next((kind for opening, kind in _OPENINGS.items() if text.startswith(opening)), None)


# Apart from the layers' colours (the viridis map) and --clip's red dashes.
_WARNING_COLOURS = {"exploding": "darkred", "vanishing": "tab:purple", "clipping": "tab:orange"}


def _mark_warnings(axes: Axes, records: list[Mapping[str, Any]]) -> None:
    """A dotted line at each step a gradient warning was given, named once a kind."""
    named: set[str] = set()
    for record in records:
        for kind in record.get("warning_kinds") or [_kind(m) for m in record.get("warnings") or []]:
            if kind not in GRADIENT_WARNINGS:
                continue
            # One colour a kind, one legend entry a kind: the warnings told apart at a glance.
            label = f"warned: {kind}" if kind not in named else "_nolegend_"
            axes.axvline(record["step"], color=_WARNING_COLOURS.get(kind, "tab:orange"), linestyle=":", label=label)
            if kind not in named:
                named.add(kind)
                axes.annotate(
                    kind,
                    (record["step"], 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -3),
                    textcoords="offset points",
                    va="top",
                    fontsize="x-small",
                    color=_WARNING_COLOURS.get(kind, "tab:orange"),
                )
