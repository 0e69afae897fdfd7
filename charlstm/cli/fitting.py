"""Tables that fit the terminal they are printed on.

A `SpareTable` names the columns it can do without; `print_table` prints
any rich table to stdout, leaving such columns out on a terminal too
narrow for all of them, and writing a file or pipe at full width.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.table import Column, Table

from charlstm.cli.app import stdout
from charlstm.cli.outputs import Terminal, on_a_terminal


class SpareTable(Table):
    """A table that names the columns it can do without, least needed
    first (by header; a tuple of headers goes together): on a terminal too
    narrow for all of them, `print_table` leaves those out, in that order,
    rather than let rich squeeze every column until names and numbers are
    cut short."""

    def __init__(self, *args: Any, spare: Sequence[str | tuple[str, ...]] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.spare = tuple(spare)


def fitted(table: Any, width: int) -> Any:
    if not isinstance(table, SpareTable):
        return table
    wide = Terminal(width=10_000)
    every = list(table.columns)
    left_out: list[str] = []
    for headers in table.spare:
        if wide.measure(table).maximum <= width:
            break
        gone = (headers,) if isinstance(headers, str) else headers
        left_out += [str(c.header) for c in table.columns if str(c.header) in gone]  # a Text's plain text
        table.columns = [column for column in table.columns if str(column.header) not in gone]
        for index, column in enumerate(table.columns):
            column._index = index  # rich pads the first and last column by their index
    if table.row_count and not _fits(table, width):
        # Still too wide with every spare column gone: rich would cut names
        # and figures to "…" (a search's table below 77 columns read
        # "trial…  0.00…  hid…"; a walkthrough, 2026-12-06). A record a block instead, every field whole.
        return stacked(table, every)
    if left_out:  # said, not silently gone (a walkthrough, 2026-12-06): a reader asked for --top 5 saw 3 units
        table.caption = f"left out to fit {width} columns: {', '.join(left_out)} (a wider window or --json shows them)"
        table.caption_justify = "left"
    return table


def _fits(table: Table, width: int) -> bool:
    """Whether `table`, printed `width` columns wide, shows each cell of
    its columns that never wrap whole (rich cuts them to "…", or crops
    them, where the others cannot make room)."""
    console = Terminal(width=width, color_system=None)
    with console.capture() as captured:
        console.print(table)
    shown = captured.get()
    return all(
        str(cell) in shown for column in table.columns if column.no_wrap for cell in (column.header, *column.cells)
    )


def stacked(table: Table, columns: Sequence[Column]) -> Table:
    """`table`'s rows as blocks of lines, a field a line ("header  value"),
    a rule between rows: what any width can show whole."""
    blocks = Table(
        title=table.title, title_justify=table.title_justify, box=box.SIMPLE_HEAD, show_header=False, pad_edge=False
    )
    blocks.add_column(style="bold", no_wrap=True)
    blocks.add_column(overflow="fold")
    cells = [list(column.cells) for column in columns]
    for row in range(table.row_count):
        if row:
            blocks.add_section()
        for column, values in zip(columns, cells, strict=True):
            blocks.add_row(column.header, values[row])
    return blocks


def print_table(table: Any) -> None:
    # Names of runs, corpora and vocabularies an encoding such as ASCII or
    # Latin-1 (PYTHONIOENCODING, LC_ALL=C without UTF-8 mode) cannot hold
    # are written as escapes (\u4e2d), as `sample` writes them, not a
    # traceback after the work is done (`eval`'s score was lost to one).
    if isinstance(sys.stdout, io.TextIOWrapper) and sys.stdout.errors in ("strict", "surrogateescape"):
        sys.stdout.reconfigure(errors="backslashreplace")
    console = stdout()
    if on_a_terminal(console):
        console.print(fitted(table, console.width))
        return
    # A file or pipe has no width to fit: never wrap cells there, and leave
    # out the spaces that pad each line to the widest.
    console.width = max(console.width, Terminal(width=10_000).measure(table).maximum)
    with console.capture() as captured:
        console.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
