"""Tables for `charlstm inspect`: data in, rich renderables out. Nothing here prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich import box
from rich.table import Table

from charlstm.cli.fitting import SpareTable
from charlstm.cli.format import skipped_text
from charlstm.errors import as_text
from charlstm.flags import option
from charlstm.introspect.features import FEATURES, UnitScore
from charlstm.introspect.record import LABELS, SATURATED_HIGH, SATURATED_LOW, Inspection, Saturation

# A unit counts as "mostly" saturated on one side when it is there on more
# than half of the steps.
_MOSTLY = 0.5


def summary_table(source: str, where: Path, inspection: Inspection, page: Path) -> Table:
    table = Table(show_header=False, show_edge=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    # Paths a shared run's metadata can name: their control and bidi characters shown, not obeyed.
    table.add_row("text", as_text(source))
    table.add_row("checkpoint", as_text(f"{where} ({inspection.model})"))
    table.add_row("characters read", f"{inspection.text_chars:,}")
    if inspection.skipped:
        skipped = skipped_text(inspection.skipped)
        table.add_row("skipped (not in vocabulary)", f"{sum(inspection.skipped.values()):,}: {skipped}")
    if inspection.truncated:
        table.add_row(f"not read ({option('max_chars')})", f"{inspection.truncated:,}")
    table.add_row("loss", f"{inspection.loss:.4f} nats/char ({inspection.bits_per_char:.4f} bits per char)")
    table.add_row("page", str(page))
    return table


def top_units_table(tops: Mapping[str, Sequence[UnitScore]], top: int) -> Table:
    # No more columns than a feature has units: --top 10**20 built that many (a walkthrough, 2026-12-06).
    top = min(top, max((len(found) for found in tops.values()), default=1)) or 1
    # A GRU has no cell state c: its units are h alone.
    kinds = sorted({s.quantity for found in tops.values() for s in found}) or ["c", "h"]
    table = SpareTable(
        title=f"Units that follow text features (L layer, {' or '.join(kinds)}, unit: correlation r)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
        spare=("what", *(f"#{rank}" for rank in range(top, 1, -1))),  # the strongest unit stays
    )
    table.add_column("feature", no_wrap=True)
    table.add_column("what", no_wrap=True)
    for rank in range(1, top + 1):
        table.add_column(f"#{rank}", no_wrap=True)
    for feature in FEATURES:
        found = tops.get(feature.name, [])
        # Absent or present throughout: either way no unit can follow it.
        cells = [f"{s.label} {s.r:+.2f}" for s in found] or ["does not vary in the text"]
        table.add_row(feature.name, feature.description, *cells)
    return table


def saturation_table(saturation: Saturation) -> Table:
    mostly = f"(>{_MOSTLY:.0%})"
    counts = (f"units mostly left {mostly}", f"units mostly right {mostly}")
    table = SpareTable(
        title=f"Gate saturation: share of steps below {SATURATED_LOW} (left) and above {SATURATED_HIGH} (right)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        pad_edge=False,
        spare=("units", counts),  # the means stay
    )
    table.add_column("layer", justify="right", no_wrap=True)
    table.add_column("gate", no_wrap=True)
    for name in ["left, mean", "right, mean", *counts, "units"]:
        table.add_column(name, justify="right", no_wrap=True)
    for layer in range(_layers(saturation)):
        for gate, (left, right) in saturation.items():
            table.add_row(
                str(layer),
                f"{gate} ({LABELS[gate]})",
                f"{left[layer].mean():.1%}",
                f"{right[layer].mean():.1%}",
                str(int((left[layer] > _MOSTLY).sum())),
                str(int((right[layer] > _MOSTLY).sum())),
                str(left.shape[1]),
            )
    return table


def _layers(saturation: Saturation) -> int:
    return next(iter(saturation.values()))[0].shape[0]
