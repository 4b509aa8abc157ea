"""Rows (lists of dicts) rendered as a rich table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import Enum

from rich.console import Console
from rich.table import Table


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def render(rows: list[dict], fmt: Format, *, title: str | None = None, console: Console | None = None) -> None:
    """Print ``rows`` in ``fmt`` (tables to the terminal, JSON and CSV as plain text)."""
    if fmt == Format.json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if fmt == Format.csv:
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(buf.getvalue(), end="")
        return
    console = console or Console(width=None if sys.stdout.isatty() else 220)
    if not rows:
        console.print(f"[yellow]no rows[/yellow]{f' ({title})' if title else ''}")
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)
