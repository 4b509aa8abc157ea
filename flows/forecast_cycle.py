"""The forecast cycle flow: poll, ingest, forecast what is pending, store.

Thin: every step is a method of :class:`nowcast_core.service.Service`. The service (and so
the loaded model) lives as long as the process, so the embedded daemon loads it once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from nowcast_core.locks import LockHeld, file_lock
from nowcast_core.service import Service

_SERVICES: dict[str, Service] = {}


def service() -> Service:
    """The process's service for the settings in the environment (created once)."""
    from nowcast_core.config import load_settings

    settings = load_settings()
    key = settings.model_dump_json()
    if key not in _SERVICES:
        svc = Service(settings)
        svc.migrate()
        _SERVICES[key] = svc
    return _SERVICES[key]


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def ingest(svc: Service) -> dict:
    report = svc.ingest()
    return {"registered": len(report.registered), "duplicates": len(report.duplicates),
            "rejected": len(report.rejected), "waiting": len(report.waiting), "failed": len(report.failed)}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def forecast_production(svc: Service) -> dict:
    s = svc.forecast(production=True)
    return {"method": s.method, "model_version": s.model_version, "runs": s.runs, "too_old": s.too_old, "note": s.note}


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def forecast_baselines(svc: Service) -> list[dict]:
    return [{"method": s.method, "runs": s.runs} for s in svc.forecast_baselines()]


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def verify(svc: Service) -> int:
    return svc.verify()


@flow(name="forecast-cycle", log_prints=True, persist_result=False)
def forecast_cycle() -> dict:
    """One cycle. Two cycles never overlap: a second one finds the lock held and returns."""
    logger = get_run_logger()
    svc = service()
    started_at, t0 = datetime.now(UTC), time.perf_counter()
    try:
        with file_lock(svc.settings.home / "cycle.lock"):
            inbox = ingest(svc)
            production = forecast_production(svc)
            baselines = forecast_baselines(svc)
            verified = verify(svc)
    except LockHeld as exc:
        logger.warning("previous cycle still running, this one skipped: %s", exc)
        return {"skipped": str(exc)}
    logger.info("cycle: inbox %s; production %s; baselines %s; %d leads verified", inbox, production, baselines, verified)
    svc.record_cycle(started_at, time.perf_counter() - t0)  # for /metrics (issue 12)
    return {"inbox": inbox, "production": production, "baselines": baselines, "verified": verified}
