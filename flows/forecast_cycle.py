"""The forecast cycle flow: poll, ingest, forecast what is pending, store.

Thin: every step is a method of :class:`nowcast_core.cycle.service.Service`. The service (and so
the loaded model) lives as long as the process, so the embedded daemon loads it once.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from nowcast_core.cycle.locks import LockHeld, file_lock
from nowcast_core.cycle.service import Service
from nowcast_core.times import duration_text

_SERVICES: dict[str, Service] = {}
log = logging.getLogger("nowcast.cycle")


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
            "rejected": len(report.rejected), "waiting": len(report.waiting), "failed": len(report.failed),
            "implausible": len(report.flagged), "in_transfer": len(report.temporary),
            "unexpected": len(report.unexpected)}


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def forecast_production(svc: Service) -> dict:
    s = svc.forecast(production=True)
    return {"method": s.method, "model_version": s.model_version, "runs": s.runs, "too_old": s.too_old, "note": s.note}


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def forecast_baselines(svc: Service) -> list[dict]:
    from nowcast_core.ensembles import ensemble_names

    ensembles = set(ensemble_names())
    return [{"method": s.method, "runs": s.runs, "ensemble": s.method in ensembles} for s in svc.forecast_baselines()]


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def verify(svc: Service) -> int:
    return svc.verify()


@task(cache_policy=NO_CACHE)
def prune(svc: Service) -> int:
    """Files of runs past the retention; first in the cycle, so a disk filled by them is freed before
    this cycle archives and forecasts. A failure is logged and the cycle goes on."""
    try:
        report = svc.prune()
    except Exception:
        log.exception("old forecast files not pruned; the next cycle retries")
        return 0
    if report is None:
        return 0
    if report.runs or report.failed:
        log.log(logging.WARNING if report.failed else logging.INFO, report.describe())
    return report.files


@flow(name="forecast-cycle", log_prints=True, persist_result=False)
def forecast_cycle(trigger: str = "sweep") -> dict:
    """One cycle: prune files past the retention, ingest, the production forecast (each run committed as it is done), then the
    baselines and verification. Two cycles never overlap: a second one finds the lock held and
    returns. ``trigger``: ``sweep`` (scheduled) or ``event`` (a scan landed in the inbox)."""
    svc = service()
    started_at, t0 = datetime.now(UTC), time.perf_counter()
    try:
        with file_lock(svc.settings.home / "cycle.lock"):
            svc.check_database_file()  # never write on into a database file moved away under this process
            pruned = prune(svc)
            inbox = ingest(svc)
            production = forecast_production(svc)
            baselines = forecast_baselines(svc)
            verified = verify(svc)
    except LockHeld as exc:
        log.warning("previous cycle still running, this one skipped: %s", exc)
        return {"skipped": str(exc)}
    except Exception as exc:
        svc.record_cycle_failure(exc)  # status, the page and /metrics show it, not only the log
        raise
    svc.record_cycle(started_at, time.perf_counter() - t0, production.get("method"))  # for /metrics and status
    summary = {"inbox": inbox, "production": production, "baselines": baselines, "verified": verified,
               "pruned_files": pruned}
    # An event cycle that found nothing to do (e.g. the settle re-check of a file already taken) stays quiet.
    level = logging.INFO if trigger == "sweep" or not idle(summary) else logging.DEBUG
    log.log(level, describe_cycle(summary, svc.newest_scan_time()))
    disk = svc.disk_warning()
    if disk:
        log.warning(disk)
    return summary


def idle(summary: dict) -> bool:
    """Whether a cycle changed nothing: no file taken from the inbox, no run stored, nothing verified."""
    inbox = summary["inbox"]
    runs = summary["production"]["runs"] + sum(b["runs"] for b in summary["baselines"])
    return not (inbox["registered"] or inbox["rejected"] or inbox["duplicates"] or runs or summary["verified"])


def describe_cycle(summary: dict, newest_scan) -> str:
    """The daemon's one console line per cycle: what arrived, what was stored, how far behind, which method."""
    inbox, production = summary["inbox"], summary["production"]
    runs = production["runs"] + sum(b["runs"] for b in summary["baselines"] if not b.get("ensemble"))
    references = sum(b["runs"] for b in summary["baselines"] if b.get("ensemble"))
    lag = "no scan yet"
    if newest_scan:
        age_s = (datetime.now(UTC) - newest_scan).total_seconds()
        lag = (f"newest scan {duration_text(age_s)} old" if age_s >= 0
               else f"newest scan {duration_text(-age_s)} ahead of this machine's clock")
    parts = [f"cycle: {inbox['registered']} scan{'' if inbox['registered'] == 1 else 's'} registered, "
             f"{inbox['rejected']} rejected",
             f"{inbox['waiting']} waiting" if inbox["waiting"] else "",
             f"{inbox['implausible']} implausible" if inbox.get("implausible") else "",
             f"{inbox['unexpected']} unexpected entries in the inbox" if inbox.get("unexpected") else "",
             f"{runs} runs stored ({production['runs']} production)",
             f"{references} reference ensemble run{'s' if references != 1 else ''}" if references else "", lag,
             f"method {production['method']}" + (f" ({production['note']})" if production["note"] else "")]
    return "; ".join(p for p in parts if p)
