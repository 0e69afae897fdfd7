"""Tables that fit the terminal they are printed on.

A `SpareTable` names the columns it can do without; `print_table` prints
any rich table to stdout, leaving such columns out on a terminal too
narrow for all of them, and writing a file or pipe at full width.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from charlstm.cli.app import stdout
from charlstm.cli.outputs import Terminal


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
    left_out: list[str] = []
    for headers in table.spare:
        if wide.measure(table).maximum <= width:
            break
        gone = (headers,) if isinstance(headers, str) else headers
        left_out += [str(c.header) for c in table.columns if str(c.header) in gone]  # a Text's plain text
        table.columns = [column for column in table.columns if str(column.header) not in gone]
        for index, column in enumerate(table.columns):
            column._index = index  # rich pads the first and last column by their index
    if left_out:  # said, not silently gone (a walkthrough, 2026-12-06): a reader asked for --top 5 saw 3 units
        table.caption = f"left out to fit {width} columns: {', '.join(left_out)} (a wider window or --json shows them)"
        table.caption_justify = "left"
    return table


def print_table(table: Any) -> None:
    console = stdout()
    if console.is_terminal:
        console.print(fitted(table, console.width))
        return
    # A file or pipe has no width to fit: never wrap cells there, and leave
    # out the spaces that pad each line to the widest.
    console.width = max(console.width, Terminal(width=10_000).measure(table).maximum)
    with console.capture() as captured:
        console.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
