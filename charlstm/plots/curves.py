"""Loss curves from runs' `metrics.jsonl` records, drawn to a PNG.

Two panels share the loss axis: loss against step (compare sample
efficiency) and against the run's time, its validation passes and saves
included (compare what a run costs). Each
run gets one colour: its training loss a thin translucent line, its
validation loss a solid line with markers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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
from charlstm.units import LN2, bits

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

Run = tuple[str, Sequence[Mapping[str, Any]]]

# The first steps fall from ~ln(vocab) in a near-vertical drop; scaling the
# loss axis to them would flatten the part of the curves worth comparing.
WARMUP_FRACTION = 0.05
# A run whose top is more than this many times the highest loss any run
# started from (about ln(vocabulary) for a new model) has diverged: the
# range leaves its top out.
OFF_SCALE = 2.0
# Text is sized in points, so the smallest picture that still fits both
# panels and their labels is fixed in inches: 320x200 pixels at 100 dpi.
MIN_WIDTH_IN, MIN_HEIGHT_IN = 3.2, 2.0
_TRAIN_ALPHA = 0.4
# More runs than this get one legend entry each, not two.
MANY_RUNS = 8
# More runs than this (a large search's folder): the best this many by
# validation loss keep their colours and legend entries, the rest are drawn
# in grey and counted. Past 32 runs every legend entry in the step panel
# hid the curves and was cut off, and past 20 colours repeated (a
# walkthrough, 2026-12-06).
LEGEND_RUNS = 20
_OTHERS_GREY = (0.72, 0.72, 0.72, 1.0)
# A legend above the panels may take at most this share of the height.
_MAX_LEGEND_HEIGHT = 0.3


def plot_runs(
    runs: Sequence[Run],
    out: Path,
    *,
    width_px: int = 1200,
    height_px: int = 450,
) -> Path:
    """Draw the runs' loss curves, overlaid, to the PNG `out` of exactly
    `width_px` x `height_px` pixels; returns `out`.

    Each run is a label and its metrics records (as
    `training.runlog.read_metrics` returns them). Raises PlotError if a run has no records yet, the size is
    too small, or matplotlib is not installed.
    """
    check_png_path(out)
    return write_png(build_figure(runs, width_px=width_px, height_px=height_px), out)


def build_figure(runs: Sequence[Run], *, width_px: int = 1200, height_px: int = 450) -> Figure:
    """The two-panel figure for `runs`, not yet rendered."""
    _check_request(runs, width_px, height_px)
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained", facecolor="white")
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    shown = _legend_runs(runs)
    colours = iter(_colours(len(shown)))

    def draw(i: int) -> list[Line2D]:
        label, records = runs[i]
        if i in shown:
            return _draw_run(by_step, by_time, label, _sorted(records), next(colours))
        return _draw_run(by_step, by_time, label, _sorted(records), _OTHERS_GREY, faint=True)

    drawn = {i: draw(i) for i in sorted(range(len(runs)), key=lambda i: i in shown)}  # the grey ones beneath
    if len(runs) == 1:  # where it was resumed: a new --lr or text can show in its curve from there
        for step in resumed_at(runs[0][1]):
            by_step.axvline(step, color="0.55", linestyle=":", linewidth=1.0)
            by_step.annotate(
                "resumed",
                (step, 0.98),
                xycoords=("data", "axes fraction"),
                rotation=90,
                fontsize="x-small",
                color="0.45",
                ha="right",
                va="top",
            )
    rows = [drawn[i] for i in range(len(runs)) if i in shown]

    by_step.set_xlabel("step")
    by_step.set_ylabel("loss (nats/char)")
    by_step.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_step.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
    # `elapsed` is the run's own clock: its validation passes, samples and
    # saves are in it (what a run costs), so a pass shows as a flat stretch.
    by_time.set_xlabel("time (minutes, validation passes included)")
    bpc = by_time.secondary_yaxis("right", functions=(_nats_to_bits, _bits_to_nats))
    bpc.set_ylabel("bits/char")
    for axes in (by_step, by_time):
        axes.set_xlim(left=0)
        axes.grid(True, color="0.9", linewidth=0.8)
        axes.set_axisbelow(True)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    limits = _loss_limits(runs)
    if limits is not None:
        by_step.set_ylim(*limits)
    # Past MANY_RUNS (a grid search's folder), a run's val line alone names it
    # in the legend, its best loss with it: two entries a run do not fit.
    legend_rows = [row[-1:] for row in rows] if len(rows) > MANY_RUNS else rows
    if len(shown) < len(runs):
        more = _blank()
        more.set_label(f"and {len(runs) - len(shown)} more runs, in grey")
        legend_rows.append([more])
    _legend(figure, by_step, legend_rows)
    return figure


def resumed_at(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The steps a run was resumed at, from its sessions' records (`runlog`;
    none in runs from before 2026-12-06)."""
    starts = (r["session"].get("from_step") for r in records if isinstance(r.get("session"), dict))
    return sorted({s for s in starts if isinstance(s, int) and not isinstance(s, bool) and s > 0})


def _legend_runs(runs: Sequence[Run]) -> set[int]:
    """The indices of the runs named in the legend: all of them, or past
    LEGEND_RUNS the best that many by their lowest validation loss (their
    training loss where they have none)."""
    if len(runs) <= LEGEND_RUNS:
        return set(range(len(runs)))

    def best(records: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
        for rank, key in enumerate(("val_loss", "train_loss")):
            losses = [x for r in records if math.isfinite(x := logged_number(r.get(key)))]
            if losses:
                return rank, min(losses)
        return 2, math.inf

    ranked = sorted(range(len(runs)), key=lambda i: best(runs[i][1]))
    return set(ranked[:LEGEND_RUNS])


def has_losses(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run's metrics hold a loss to draw (not only the line of a stop before its first step)."""
    return any("train_loss" in r or "val_loss" in r for r in records)


def _check_request(runs: Sequence[Run], width_px: int, height_px: int) -> None:
    if not runs:
        raise PlotError("nothing to plot: no runs were given")
    for label, records in runs:
        if not records:
            raise PlotError(
                f"run {label} has no metrics yet (its metrics.jsonl is missing or empty, or none of its lines "
                "could be read)"
            )
        if not has_losses(records):
            raise PlotError(f"run {label} has no losses to plot yet: it stopped before its first logged step")
    check_size(width_px, height_px, MIN_WIDTH_IN, MIN_HEIGHT_IN, "both panels")


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    # tab10 keeps up to ten runs distinct; past ten, tab20, which pairs each
    # of tab10's colours with a paler one: the first ten keep tab10's, the
    # next ten get the pale ones (neighbours in its order are near alike).
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return [colormaps["tab20"]((2 * i + (i // 10) % 2) % 20) for i in range(count)]


def _sorted(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(records, key=lambda record: record["step"])


def _draw_run(
    by_step: Axes, by_time: Axes, label: str, records: list[Mapping[str, Any]], colour: Any, faint: bool = False
) -> list[Line2D]:
    """Draw one run on both panels (`faint`: thin, behind the others); its
    step-panel lines, for the legend."""
    minutes = [seconds / 60 for seconds in _elapsed(records)]
    label = plain(label)
    timed = list(zip(records, minutes, strict=True))
    train = [(r["step"], m, logged_number(r["train_loss"])) for r, m in timed if "train_loss" in r]
    val = [(r["step"], m, logged_number(r["val_loss"])) for r, m in timed if "val_loss" in r]
    lines = []
    if train:
        steps, times, losses = zip(*train, strict=True)
        style = {"color": colour, "linewidth": 1.0, "alpha": _TRAIN_ALPHA}
        lines += by_step.plot(steps, losses, label=f"{label} train", **style)
        by_time.plot(times, losses, **style)
    if val:
        steps, times, losses = zip(*val, strict=True)
        style = {"color": colour, "linewidth": 1.8, "marker": "o", "markersize": 3.5}
        if faint:
            style.update(linewidth=1.0, markersize=0)
        lines += by_step.plot(steps, losses, label=f"{label} val, {_best_text(val)}", **style)
        by_time.plot(times, losses, **style)
    return lines


def _legend(figure: Figure, by_step: Axes, rows: list[list[Line2D]]) -> None:
    """One legend above both panels: a row per run (two runs a row when
    there are many), its train entry beside its val entry; one entry a row,
    smaller, when that is too wide. When no arrangement fits above the
    panels, it goes inside the step panel rather than squeeze them away."""
    many = [(4, "small"), (3, "small"), (4, "x-small")] if len(rows) > MANY_RUNS else []
    arrangements = [*many, (2 if len(rows) > 3 else 1, "small"), (1, "small"), (0, "small"), (0, "x-small")]
    tries = [(*_legend_order(rows, runs_per_row), fontsize) for runs_per_row, fontsize in arrangements]
    if legend_above(figure, tries, _MAX_LEGEND_HEIGHT, columnspacing=2.5) is not None:
        return
    handles = tries[-1][0]
    legend = by_step.legend(handles=handles, loc="upper right", fontsize="x-small", framealpha=0.9)
    legend.set_in_layout(False)


def _legend_order(rows: list[list[Line2D]], runs_per_row: int) -> tuple[list[Line2D], int]:
    """The legend's handles and column count to show `runs_per_row` runs a
    row, or every entry on a row of its own when that is 0."""
    if runs_per_row == 0:
        return [line for row in rows for line in row], 1
    width = max(len(row) for row in rows)
    columns = width * runs_per_row
    entries = [line for row in rows for line in row + [_blank() for _ in range(width - len(row))]]
    entries += [_blank() for _ in range(-len(entries) % columns)]
    # A legend fills its columns top to bottom; reorder so it reads by rows.
    height = len(entries) // columns
    return [entries[row * columns + column] for column in range(columns) for row in range(height)], columns


def _blank() -> Line2D:
    """An invisible legend entry: it stands in for a run's missing train or
    val line so that the runs after it stay in their columns."""
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="none", label="")


def _best_text(val: list[tuple[int, float, float]]) -> str:
    finite = [(loss, step) for step, _minutes, loss in val if math.isfinite(loss)]
    if not finite:
        return "no finite loss"
    loss, step = min(finite)
    return f"best {loss:.3f} at step {step:,}"


def _elapsed(records: list[Mapping[str, Any]]) -> list[float]:
    """Training seconds at each record. A validation-only line carries no
    `elapsed`; it gets the time interpolated from its neighbours' steps."""
    known = [(record["step"], float(record["elapsed"])) for record in records if "elapsed" in record]
    if not known or known[0][0] > 0:
        known.insert(0, (0, 0.0))  # a run starts at step 0 with no time spent
    steps, seconds = zip(*known, strict=True)
    return [
        float(record["elapsed"]) if "elapsed" in record else float(np.interp(record["step"], steps, seconds))
        for record in records
    ]


def _loss_limits(runs: Sequence[Run]) -> tuple[float, float] | None:
    """The loss range to show: from the lowest loss up to the highest one
    after each run's first few percent of steps (its own: a short run
    overlaid on a long one would otherwise fall above the range), leaving
    out the tops of runs that went far above where any run started (a
    diverged trial's 1e26 would flatten every other curve; its line runs
    off the top, its best loss stays in the legend). None when there is no
    finite loss to scale to (a run that diverged at once), to leave
    matplotlib's automatic range."""
    lows, highs, firsts = [], [], []
    for _label, records in runs:
        cutoff = WARMUP_FRACTION * max(record["step"] for record in records)
        losses = [
            (record["step"], loss)
            for record in records
            for loss in (logged_number(record.get(key)) for key in ("train_loss", "val_loss"))
            if math.isfinite(loss)  # null where a diverged step was logged
        ]
        if losses:
            lows.append(min(loss for _step, loss in losses))
            highs.append(max((loss for step, loss in losses if step >= cutoff), default=lows[-1]))
            firsts.append(min(losses)[1])  # at the run's first logged step
    if not firsts:
        return None
    # Where the runs started: a fine-tuned run near 1, a new one near ln(V);
    # not one that had diverged by its first logged step (far above the rest).
    started = max(first for first in firsts if first <= 10 * min(firsts))
    high = max(h for h in highs if h <= OFF_SCALE * started or h == min(highs))
    low = min(lows)
    span = max(high - low, 0.05 * max(abs(high), 1.0))
    return low - 0.05 * span, high + 0.08 * span


def _nats_to_bits(nats: Any) -> Any:
    return bits(nats)


def _bits_to_nats(bits: Any) -> Any:
    return bits * LN2
