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


def render(rows: list[dict], fmt: Format, *, title: str | None = None, console: Console | None = None,
           priority: list[str] | None = None) -> None:
    """Print ``rows`` in ``fmt`` (tables to the terminal, JSON and CSV as plain text).

    A table wider than the terminal keeps the columns it can show (whole; text with spaces longer than
    :data:`FOLD_AT` folded), in ``priority`` order (default: the keys' order; the first two always), in
    their own order, and names the ones it left out: a squeezed table folds every cell into unreadable
    slivers."""
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
    keys = list(rows[0])
    natural = {k: max(len(k), *(len(_cell(r.get(k))) for r in rows)) for k in keys}
    # The least width a column is shown at: text with spaces (a reason, a quality note) may fold at FOLD_AT;
    # a checksum, a path or a time is shown whole or not at all.
    least = {k: min(natural[k], max(FOLD_AT, len(k))) if any(" " in _cell(r.get(k)) for r in rows) else natural[k]
             for k in keys}
    shown = _columns_that_fit(keys, least, console.width, priority)
    left_out = [k for k in keys if k not in shown]
    caption = (f"left out for the terminal's width: {', '.join(left_out)} (widen it, or --format json or csv)"
               if left_out else None)
    widths = {k: least[k] for k in shown}
    spare = console.width - 1 - sum(w + 3 for w in widths.values())
    for key in _by_priority(shown, priority):  # the room left unfolds long text, the most important first
        grow = min(natural[key] - widths[key], max(spare, 0))
        widths[key] += grow
        spare -= grow
    table = Table(title=title, caption=caption)
    for key in shown:
        table.add_column(key, overflow="fold", no_wrap=widths[key] >= natural[key], max_width=widths[key])
    for row in rows:
        table.add_row(*(_cell(row.get(k)) for k in shown))
    console.print(table)


#: A column of longer text (a reason, a quality note) folds its cells at this width rather than being left out.
FOLD_AT = 30


def _columns_that_fit(keys: list[str], least: dict[str, int], width: int, priority: list[str] | None) -> list[str]:
    """The keys whose columns (at their ``least`` width, with rich's padding and rule) fit in ``width``,
    taken in ``priority`` order up to the first that does not fit (a less important column never takes
    the place of a more important one), in the keys' order."""
    need = {k: least[k] + 3 for k in keys}
    order = _by_priority(keys, priority)
    kept, used = set(order[:2]), 1 + sum(need[k] for k in order[:2])
    for key in order[2:]:
        if used + need[key] > width:
            break
        kept.add(key)
        used += need[key]
    return [k for k in keys if k in kept]


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


def _by_priority(keys: list[str], priority: list[str] | None) -> list[str]:
    """``keys`` in ``priority`` order, the others after them in their own order."""
    first = [k for k in (priority or []) if k in keys]
    return first + [k for k in keys if k not in first]
