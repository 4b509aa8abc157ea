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
            flat = [_flat(r) for r in rows]
            writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in flat for k in r)))
            writer.writeheader()
            writer.writerows(flat)
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
        table.add_row(*(_cell(v) for v in row.values()))
    console.print(table)


def _flat(row: dict) -> dict:
    """A CSV row: a dict value becomes one column per key (``prob_accum_ge_5``), a list a JSON string."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update({f"{key}_{k}": v for k, v in value.items()})
        elif isinstance(value, (list, tuple)):
            out[key] = json.dumps(value)
        else:
            out[key] = value
    return out


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return " ".join(f"{k}:{v:.2f}" if isinstance(v, float) else f"{k}:{v}" for k, v in value.items())
    return str(value)
