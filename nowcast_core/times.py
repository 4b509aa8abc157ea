"""Times as the system writes and reads them: ISO 8601 in UTC with a ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(t: datetime | None, timespec: str = "auto") -> str | None:
    """``2020-10-31T12:00:00Z`` (None stays None); naive times are taken as UTC."""
    if t is None:
        return None
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_minutes(t: datetime) -> str:
    """``2020-10-31T12:00Z``: a scan or issue time in messages."""
    return f"{t.astimezone(UTC) if t.tzinfo else t:%Y-%m-%dT%H:%MZ}"


def duration_text(seconds: float) -> str:
    """An age in messages: ``14 s`` under a minute, ``12 min`` under two hours, ``3.5 h`` under two
    days, then ``4217.1 days``."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 48 * 3600 else f"{seconds / 86400:.1f} days"


def parse_iso_utc(value: str) -> datetime:
    """An ISO 8601 string (``Z`` or an offset; naive = UTC) as an aware UTC datetime.

    Raises ValueError with the accepted form in its message.
    """
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time, e.g. 2020-10-31T12:00Z") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
