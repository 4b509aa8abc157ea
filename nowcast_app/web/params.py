"""Request parameters, errors and responses of the API: one short JSON message per mistake."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

from fastapi.responses import JSONResponse, Response

from nowcast_core.times import iso_utc as iso
from nowcast_core.times import parse_iso_utc

#: Cache lifetimes (seconds): live data changes every cycle; a stored field or scan never changes.
LIVE_MAX_AGE_S = 10
IMMUTABLE_MAX_AGE_S = 365 * 24 * 3600


class ApiError(Exception):
    """A client mistake: ``status`` (400/404/410/422), a message and optional extra keys."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def error_response(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers={"Cache-Control": "no-store"})


def parse_time(value: str | None, name: str) -> datetime | None:
    """ISO 8601 to an aware UTC datetime (naive taken as UTC); 422 otherwise."""
    if value is None or value == "":
        return None
    try:
        return parse_iso_utc(value)
    except ValueError as exc:
        raise ApiError(422, f"{name}: {exc}") from None


def check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until < since:
        raise ApiError(422, f"until ({iso(until)}) is before since ({iso(since)})")


def check_format(fmt: str) -> str:
    if fmt not in ("json", "csv"):
        raise ApiError(422, f"format: {fmt!r} is not one of json, csv")
    return fmt


def _flat(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update({f"{k}_{kk}": vv for kk, vv in v.items()})
        elif isinstance(v, list):
            out[k] = json.dumps(v)
        else:
            out[k] = v
    return out


def rows_response(rows, fmt: str = "json", *, max_age: int = LIVE_MAX_AGE_S, filename: str = "rows") -> Response:
    """JSON (as is) or CSV (nested dicts flattened to ``key_subkey``) with a cache header."""
    headers = {"Cache-Control": f"public, max-age={max_age}"}
    if check_format(fmt) == "json":
        return JSONResponse(rows, headers=headers)
    flat = [_flat(r) for r in rows]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    buf = io.StringIO()
    if flat:
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    headers["Content-Disposition"] = f'inline; filename="{filename}.csv"'
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
