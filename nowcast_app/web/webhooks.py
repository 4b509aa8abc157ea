"""Delivering alert changes to webhooks from the outbox: POST JSON, retried with back-off, every try recorded.

Each outbox row is one (change, URL) pair (unique), so a change is queued for a URL once.
A row is claimed before it is sent, so two deliverers never send it at once; a POST that
succeeded but could not be recorded (the process died in between) is sent again, so every
POST carries ``Idempotency-Key: nowcast-change-<id>`` for the receiver to drop a repeat.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from nowcast_core.alerts import backoff_seconds
from nowcast_core.db.schema import AlertChange, WebhookAttempt, WebhookOutbox

log = logging.getLogger("nowcast.webhooks")


def _claim(sessions, row_id: int, now: datetime, lease: timedelta) -> bool:
    with sessions() as s:
        result = s.execute(update(WebhookOutbox)
                           .where(WebhookOutbox.id == row_id, WebhookOutbox.status == "pending",
                                  WebhookOutbox.next_attempt_at <= now)
                           .values(next_attempt_at=now + lease))
        s.commit()
        return result.rowcount == 1


def _post(client: httpx.Client, url: str, payload: dict, change_id: int) -> tuple[bool, int | None, str | None]:
    try:
        response = client.post(url, json=payload, headers={"Idempotency-Key": f"nowcast-change-{change_id}",
                                                           "User-Agent": "nowcast-webhooks"})
    except httpx.HTTPError as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:500]
    ok = 200 <= response.status_code < 300
    return ok, response.status_code, None if ok else f"HTTP {response.status_code}: {response.text[:200]}"


def deliver_due(sessions, *, timeout_s: float = 5.0, backoff_s: float = 30.0, max_attempts: int = 10,
                now: datetime | None = None, limit: int = 100) -> dict:
    """Send every pending notification whose time has come; returns counts of what happened."""
    now = now or datetime.now(UTC)
    with sessions() as s:
        due = list(s.execute(select(WebhookOutbox.id, WebhookOutbox.url, AlertChange.id, AlertChange.payload)
                             .join(AlertChange, WebhookOutbox.change_id == AlertChange.id)
                             .where(WebhookOutbox.status == "pending", WebhookOutbox.next_attempt_at <= now)
                             .order_by(WebhookOutbox.id).limit(limit)))
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    if not due:
        return counts
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for row_id, url, change_id, payload in due:
            if not _claim(sessions, row_id, now, timedelta(seconds=timeout_s + 60)):
                continue  # another deliverer has it
            t0 = time.perf_counter()
            ok, code, error = _post(client, url, payload, change_id)
            at = datetime.now(UTC)
            with sessions() as s:
                row = s.get(WebhookOutbox, row_id)
                row.tries.append(WebhookAttempt(attempted_at=at, ok=ok, status_code=code, error=error,
                                                duration_ms=round((time.perf_counter() - t0) * 1000, 1)))
                row.attempts += 1
                row.last_status_code, row.last_error = code, error
                if ok:
                    row.status, row.delivered_at = "delivered", at
                    counts["delivered"] += 1
                elif row.attempts >= max_attempts:
                    row.status = "failed"
                    counts["failed"] += 1
                    log.error("webhook %s: change %d not delivered after %d attempts (%s)", url, change_id,
                              row.attempts, error)
                else:
                    row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts, backoff_s))
                    counts["retrying"] += 1
                    log.warning("webhook %s: change %d attempt %d failed (%s); next at %s", url, change_id,
                                row.attempts, error, f"{row.next_attempt_at:%H:%M:%SZ}")
                s.commit()
    return counts


def delivery_job(settings):
    """A function the daemon runs every ``webhook_interval_s`` (its own engine; the daemon logs a
    failure and the next run retries)."""
    from nowcast_core.db import make_engine, session_factory

    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)

    def job() -> None:
        deliver_due(sessions, timeout_s=settings.webhook_timeout_s, backoff_s=settings.webhook_backoff_s,
                    max_attempts=settings.webhook_max_attempts)

    job.close = engine.dispose
    return job
