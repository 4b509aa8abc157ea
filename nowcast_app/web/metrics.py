"""``/metrics`` for Prometheus, computed from the database at scrape time (any process can serve it)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from nowcast_app.web.context import WebContext
from nowcast_core.alerts import RANK
from nowcast_core.contract import THRESHOLDS_MM_H
from nowcast_core.cycle.retention import last_prune, prune_failing
from nowcast_core.db.queries import current_levels
from nowcast_core.db.schema import (
    ForecastRun,
    FrameRecord,
    RejectedFile,
    WebhookAttempt,
)
from nowcast_core.verification.scores import score_key
from nowcast_core.verification.stored import skill_rows

#: Verification skill in the metrics covers runs issued this long before the newest scan.
SKILL_WINDOW = timedelta(hours=24)


class NowcastCollector:
    def __init__(self, ctx: WebContext):
        self.ctx = ctx

    def describe(self):
        return []

    def collect(self):
        ctx = self.ctx
        with ctx.sessions() as s:
            newest = s.scalar(select(func.max(FrameRecord.scan_time)))
            last = s.scalar(select(ForecastRun).where(ForecastRun.is_production)
                            .order_by(ForecastRun.issue_time.desc()).limit(1))
            runs = s.execute(select(ForecastRun.method, func.count(ForecastRun.id)).group_by(ForecastRun.method)).all()
            rejected = s.execute(select(RejectedFile.reason_kind, func.count(RejectedFile.id))
                                 .group_by(RejectedFile.reason_kind)).all()
            cycle = ctx.service.last_cycle(s)
            failing_prune = prune_failing(last_prune(s))
            health = ctx.service.cycle_health(s)
            failures = s.scalar(select(func.count(WebhookAttempt.id)).where(WebhookAttempt.ok.is_(False)))
            delivered = s.scalar(select(func.count(WebhookAttempt.id)).where(WebhookAttempt.ok.is_(True)))
            levels = [(a.dam_id, a.level) for a in current_levels(s)]
            skill = skill_rows(s, since=newest - SKILL_WINDOW, by="lead") if newest else []

        age = GaugeMetricFamily("nowcast_newest_scan_age_seconds", "Seconds since the newest registered scan's time")
        if newest is not None:
            age.add_metric([], (ctx.clock() - newest).total_seconds())
        yield age
        lag = GaugeMetricFamily("nowcast_forecast_lag_seconds", "Newest scan time minus the last production issue time")
        if newest is not None and last is not None:
            lag.add_metric([], (newest - last.issue_time).total_seconds())
        yield lag
        duration = GaugeMetricFamily("nowcast_cycle_duration_seconds", "Duration of the daemon's last forecast cycle")
        if "duration_s" in cycle:
            duration.add_metric([], float(cycle["duration_s"]))
        yield duration
        stored = CounterMetricFamily("nowcast_runs_stored", "Forecast runs stored, by method", labels=["method"])
        for method, n in runs:
            stored.add_metric([method], n)
        yield stored
        files = CounterMetricFamily("nowcast_files_rejected", "Inbox files quarantined, by reason", labels=["reason"])
        for reason, n in rejected:
            files.add_metric([reason], n)
        yield files
        fallback = GaugeMetricFamily("nowcast_fallback_active",
                                     "1 when the last production run was made by a fallback method (its note says why)")
        if last is not None:
            fallback.add_metric([], 1.0 if (last.note or "").strip() else 0.0)
        yield fallback
        csi = GaugeMetricFamily("nowcast_verification_csi", "CSI of runs issued in the 24 h before the newest scan",
                                labels=["method", "lead", "threshold"])
        mae = GaugeMetricFamily("nowcast_verification_mae_mm_h", "MAE (mm/h) of runs issued in the 24 h before the "
                                "newest scan", labels=["method", "lead"])
        for row in skill:
            for thr in THRESHOLDS_MM_H:
                value = row.get(score_key("csi", thr))
                if value is not None:
                    csi.add_metric([row["method"], str(row["lead_minutes"]), f"{thr:g}"], value)
            if row["mae_mm_h"] is not None:
                mae.add_metric([row["method"], str(row["lead_minutes"])], row["mae_mm_h"])
        yield csi
        yield mae
        fails = CounterMetricFamily("nowcast_webhook_failures", "Webhook POSTs that failed (error or non-2xx)")
        fails.add_metric([], failures or 0)
        yield fails
        ok = CounterMetricFamily("nowcast_webhook_deliveries", "Webhook POSTs answered with 2xx")
        ok.add_metric([], delivered or 0)
        yield ok
        free = GaugeMetricFamily("nowcast_disk_free_bytes", "Free bytes on each disk holding a state folder",
                                 labels=["folders"])
        spaces = ctx.service.disk_space()
        for space in spaces:
            free.add_metric([",".join(space.folders)], space.free_bytes)
        yield free
        low = GaugeMetricFamily("nowcast_disk_low", "1 when a disk holding a state folder has less free space than "
                                "NOWCAST_MIN_FREE_DISK_GB")
        low.add_metric([], 0.0 if ctx.service.low_disk(spaces) is None else 1.0)
        yield low
        failing = GaugeMetricFamily("nowcast_prune_failing", "1 when the last pruning of old forecast files failed "
                                    "or left files it could not delete (NOWCAST_KEEP_FORECAST_FILES_DAYS)")
        failing.add_metric([], 1.0 if failing_prune else 0.0)
        yield failing
        cycle_failures = GaugeMetricFamily("nowcast_cycle_consecutive_failures", "Forecast cycles failed in a row "
                                           "since the last that ran through (0: the last one did)")
        cycle_failures.add_metric([], float(health["cycle_failures"]))
        yield cycle_failures
        level = GaugeMetricFamily("nowcast_alert_level", "Alert level per dam: 0 none, 1 advisory, 2 emergency",
                                  labels=["dam"])
        for dam_id, name in levels:
            level.add_metric([dam_id], RANK.get(name, 0))
        yield level


def metrics_text(ctx: WebContext) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NowcastCollector(ctx))
    return generate_latest(registry)
