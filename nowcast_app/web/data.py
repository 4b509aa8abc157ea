"""Read-only answers of the API, as plain rows (dicts); times ISO 8601 UTC."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from nowcast_app.web.context import WebContext
from nowcast_app.web.params import ApiError, iso
from nowcast_core.alerts import (
    LEVELS,
    AlertRules,
    catchment_means,
    observed_depth_mm,
)
from nowcast_core.contract import LEAD_MINUTES
from nowcast_core.cycle.service import feed_stale
from nowcast_core.dams import Disc, catchment_mask
from nowcast_core.db.queries import alert_row, current_alert_rows
from nowcast_core.db.schema import (
    AlertChange,
    DamAlert,
    DamRainfall,
    ForecastRun,
    FrameRecord,
    WebhookOutbox,
)
from nowcast_core.inbox.ingest import load_rain_rates


def known_methods(ctx: WebContext) -> list[str]:
    def query():
        with ctx.sessions() as s:
            return sorted(s.scalars(select(ForecastRun.method).distinct()))
    return ctx.live.get("methods", query)


def check_dam(ctx: WebContext, dam: str | None) -> None:
    if dam is not None and dam not in ctx.dam_ids:
        raise ApiError(404, f"unknown dam {dam!r}", known_dams=ctx.dam_ids)


def check_method(ctx: WebContext, method: str | None) -> None:
    if method is not None and method not in known_methods(ctx):
        raise ApiError(404, f"no stored runs of method {method!r}", known_methods=known_methods(ctx))


def check_lead(lead_minutes: int | None, *, allow_zero: bool = False) -> None:
    allowed = ((0,) if allow_zero else ()) + tuple(LEAD_MINUTES)
    if lead_minutes is not None and lead_minutes not in allowed:
        raise ApiError(422, f"lead_minutes: {lead_minutes} is not one of {list(allowed)}")


def _status_from_db(ctx: WebContext) -> dict:
    base = ctx.service.status()
    with ctx.sessions() as s:
        newest = s.scalar(select(func.max(FrameRecord.scan_time)))
        alerts = current_alert_rows(s)
    base["newest_scan"] = newest
    base["alerts"] = alerts
    return base


def status(ctx: WebContext) -> dict:
    """The newest scan and its age, the last production run, the method in use, open alerts."""
    st = ctx.live.get("status", lambda: _status_from_db(ctx))
    now = ctx.clock()
    newest = st["newest_scan"]
    age_s = (now - newest).total_seconds() if newest else None
    stale_after = ctx.settings.stale_scan_minutes
    return {
        "now": iso(now),
        "newest_scan_time": iso(newest),
        "newest_scan_age_minutes": None if age_s is None else round(age_s / 60, 1),
        "stale_after_minutes": stale_after,
        "feed_stale": feed_stale(newest, now, stale_after),
        "last_run_issue_time": st["last_forecast_issue_time"],
        "last_run_method": st["last_forecast_method"],
        "last_run_model_version": st["last_forecast_model_version"],
        "last_run_stored_at": st["last_forecast_stored_at"],
        "forecast_lag_minutes": st["forecast_lag_minutes"],
        "method_in_use": st["method_in_use"],
        "fallback_reason": st["fallback_reason"] or st["last_forecast_note"],
        "open_alerts": [a for a in st["alerts"] if a["level"] != "none"],
        "counts": {k: st[k] for k in ("frames", "rejected_files", "forecast_runs", "production_runs")},
        "disk_free_gb": st["disk_free_gb"],
        "disk_free_folders": st["disk_free_folders"],
        "disk_low": st["disk_low"],
        "min_free_disk_gb": ctx.settings.min_free_disk_gb,
        **{k: st[k] for k in ("keep_forecast_files_days", "forecast_files_since", "last_prune", "prune_failing",
                              "cycle_failures", "last_cycle_error", "inbox_missing")},
    }


def dams(ctx: WebContext) -> list[dict]:
    rules = AlertRules.from_settings(ctx.settings)
    out = []
    for d in ctx.dams:
        c = d.catchment
        catchment = ({"kind": "disc", "centre": list(c.centre), "radius_px": c.radius_px} if isinstance(c, Disc)
                     else {"kind": "polygon", "vertices": [list(v) for v in c.vertices]})
        out.append({"dam": d.id, "name": d.name, "pixel": list(d.pixel), "catchment": catchment,
                    "catchment_pixels": int(catchment_mask(d).sum()), "area_km2": d.area_km2,
                    "thresholds": {"advisory_3h_mm": rules.advisory_3h_mm, "emergency_1h_mm": rules.emergency_1h_mm,
                                   "emergency_combined_1h_mm": rules.emergency_combined_1h_mm,
                                   "emergency_combined_3h_mm": rules.emergency_combined_3h_mm,
                                   "alert_probability": ctx.settings.alert_probability}})
    return out


def alerts_current(ctx: WebContext, dam: str | None = None) -> list[dict]:
    with ctx.sessions() as s:
        return current_alert_rows(s, dam)


def alerts_history(ctx: WebContext, *, dam=None, since=None, until=None, limit: int = 200) -> list[dict]:
    """Every change of a dam's level between consecutive runs, newest first, with its notification."""
    q = select(DamAlert).where(DamAlert.level != DamAlert.previous_level)
    if dam:
        q = q.where(DamAlert.dam_id == dam)
    if since:
        q = q.where(DamAlert.issue_time >= since)
    if until:
        q = q.where(DamAlert.issue_time <= until)
    with ctx.sessions() as s:
        alerts = list(s.scalars(q.order_by(DamAlert.issue_time.desc(), DamAlert.dam_id).limit(limit)))
        changes = {c.alert_id: c for c in s.scalars(select(AlertChange).where(
            AlertChange.alert_id.in_([a.id for a in alerts])))}
        outbox = {}
        for o in s.scalars(select(WebhookOutbox).where(WebhookOutbox.change_id.in_([c.id for c in changes.values()]))):
            outbox.setdefault(o.change_id, []).append(o)
        rows = []
        for a in alerts:
            c = changes.get(a.id)
            row = alert_row(a)
            row["notified"] = c is not None
            row["deliveries"] = [{"url": o.url, "status": o.status, "attempts": o.attempts,
                                  "last_status_code": o.last_status_code, "delivered_at": iso(o.delivered_at)}
                                 for o in outbox.get(c.id, [])] if c else []
            rows.append(row)
    return rows


def _means(ctx: WebContext, record: FrameRecord) -> dict:
    return ctx.scan_means.get((record.scan_time, record.checksum),
                              lambda: catchment_means(load_rain_rates(record, ctx.settings.archive), ctx.dams))


def series(ctx: WebContext, hours: float) -> dict:
    """Observed catchment-mean rain of the last ``hours`` before the newest production run, and its forecast."""
    with ctx.sessions() as s:
        run = s.scalar(select(ForecastRun).where(ForecastRun.is_production, ForecastRun.status == "ok")
                       .order_by(ForecastRun.issue_time.desc()).limit(1))
        end = run.issue_time if run else s.scalar(select(func.max(FrameRecord.scan_time)))
        if end is None:
            return {"issue_time": None, "method": None, "observed_times": [], "dams": {}}
        frames = list(s.scalars(select(FrameRecord).where(FrameRecord.scan_time > end - timedelta(hours=hours),
                                                          FrameRecord.scan_time <= end).order_by(FrameRecord.scan_time)))
        forecast = {}
        if run:
            for r in s.scalars(select(DamRainfall).where(DamRainfall.run_id == run.id)
                               .order_by(DamRainfall.lead_minutes)):
                forecast.setdefault(r.dam_id, []).append({"time": iso(r.valid_time), "lead_minutes": r.lead_minutes,
                                                          "mean_mm_h": round(r.mean_mm_h, 3),
                                                          "depth_mm": round(r.depth_mm, 3)})
    means = {f.scan_time: _means(ctx, f) for f in frames}
    out = {}
    for d in ctx.dams:
        observed = [{"time": iso(t), "mean_mm_h": None if m[d.id] is None else round(m[d.id], 3)}
                    for t, m in means.items()]
        last2h = [m[d.id] for t, m in means.items() if t > end - timedelta(hours=2)]
        out[d.id] = {"observed": observed, "observed_2h_mm": round(observed_depth_mm(last2h), 3),
                     "forecast": forecast.get(d.id, [])}
    return {"issue_time": iso(run.issue_time) if run else None, "method": run.method if run else None,
            "hours": hours, "observed_times": [iso(t) for t in means], "levels": list(LEVELS), "dams": out}
