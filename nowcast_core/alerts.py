"""Alert levels per dam, and their storage with the notifications they cause.

Rules (defaults after KMA's heavy-rain criteria, each threshold a setting), on catchment-mean
rain depths:

- the 3-hour total is the *observed* depth of the last 2 hours (the scans at t-110 .. t,
  each rate held for 10 minutes) plus the *forecast* depth of the next hour (the sum of the
  six 10-minute depths, i.e. ``depth_mm`` at +60 min);
- ``emergency``: forecast 1 h >= 72 mm, or forecast 1 h >= 50 mm with 3 h >= 90 mm;
- ``advisory``: 3 h >= 60 mm;
- ``none`` otherwise.

With the production ensemble (:func:`assess_probabilistic`), each member's forecast hour is put
through the same rules: a level is raised when the share of members that reach it (its
probability) is at least ``alert_probability`` (default 0.5); the reason says it in words. Where
the dam products pooled STEPS members, the share is weighted as theirs is, so an alert's
probability is the one the dashboard and API publish. A run
without an ensemble (it failed) is assessed on the deterministic depths, and says so.

The first part of this module is pure (no database): :func:`assess`, :func:`observed_depth_mm`,
:func:`catchment_means`, :func:`backoff_seconds`. :func:`update_alerts` stores one level per
production run and dam and, when a dam's level differs from the level last notified, one
change with one outbox row per webhook (unique per change and URL: never sent twice).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from nowcast_core.contract import SCAN_INTERVAL
from nowcast_core.dams import Dam
from nowcast_core.dams import catchment_means as dams_catchment_means
from nowcast_core.times import iso_utc

log = logging.getLogger(__name__)

LEVELS = ("none", "advisory", "emergency")
RANK = {name: k for k, name in enumerate(LEVELS)}
#: Minutes between radar scans; each observed rate is taken to hold this long.
SCAN_MINUTES = SCAN_INTERVAL.total_seconds() / 60
#: The observed part of the 3-hour total.
OBSERVED_HOURS = 2


@dataclass(frozen=True)
class AlertRules:
    """Thresholds in mm of catchment-mean rain depth."""

    advisory_3h_mm: float = 60.0
    emergency_1h_mm: float = 72.0
    emergency_combined_1h_mm: float = 50.0
    emergency_combined_3h_mm: float = 90.0

    @classmethod
    def from_settings(cls, settings) -> "AlertRules":
        return cls(settings.alert_advisory_3h_mm, settings.alert_emergency_1h_mm,
                   settings.alert_emergency_combined_1h_mm, settings.alert_emergency_combined_3h_mm)


@dataclass(frozen=True)
class Assessment:
    level: str
    observed_2h_mm: float
    forecast_1h_mm: float
    total_3h_mm: float
    reason: str
    #: Probability of the level's rule over the ensemble (None: assessed deterministically).
    probability: float | None = None


def assess(observed_2h_mm: float, forecast_1h_mm: float, rules: AlertRules = AlertRules()) -> Assessment:
    """The alert level of one dam from its observed 2-hour and forecast 1-hour depths (mm)."""
    total = observed_2h_mm + forecast_1h_mm
    numbers = f"forecast 1 h {forecast_1h_mm:.1f} mm, observed 2 h {observed_2h_mm:.1f} mm, 3 h {total:.1f} mm"
    if forecast_1h_mm >= rules.emergency_1h_mm:
        level, why = "emergency", f"forecast 1 h >= {rules.emergency_1h_mm:g} mm"
    elif forecast_1h_mm >= rules.emergency_combined_1h_mm and total >= rules.emergency_combined_3h_mm:
        level, why = "emergency", (f"forecast 1 h >= {rules.emergency_combined_1h_mm:g} mm with "
                                   f"3 h >= {rules.emergency_combined_3h_mm:g} mm")
    elif total >= rules.advisory_3h_mm:
        level, why = "advisory", f"3 h >= {rules.advisory_3h_mm:g} mm"
    else:
        level, why = "none", "below every threshold"
    return Assessment(level, observed_2h_mm, forecast_1h_mm, total, f"{why} ({numbers})")


def assess_probabilistic(observed_2h_mm: float, forecast_1h_mm: float, member_1h_mm: Sequence[float],
                         rules: AlertRules = AlertRules(), alert_probability: float = 0.5,
                         ensemble: str = "ensemble", steps_member_1h_mm: Sequence[float] | None = None,
                         steps_weight: float | None = None,
                         published_range_mm: tuple[float, float, float] | None = None) -> Assessment:
    """The alert level of one dam from the ensemble: the highest level whose rule at least
    ``alert_probability`` of the members reach. Where the dam products pooled STEPS members
    (``steps_member_1h_mm`` at ``steps_weight``), the members are weighed as the products weigh them
    (:func:`nowcast_core.ensembles.products.pool_members`), so the alert's probability and spread are
    those the operator sees published. ``published_range_mm``: the hour's (10 %, median, 90 %) as the
    dam products published them (their range calibrated); without it, the members' 0.1, 0.5 and 0.9
    quantiles. ``forecast_1h_mm`` (the deterministic forecast) is kept for the record; the reason names
    the probability, the rule and the members' spread."""
    from nowcast_core.ensembles.products import (
        member_quantile,
        member_share,
        pool_members,
    )

    own = np.asarray(member_1h_mm, dtype=np.float64)
    if not len(own):
        raise ValueError("no ensemble members")
    steps = None if steps_member_1h_mm is None else np.asarray(steps_member_1h_mm, dtype=np.float64)
    members, weights = pool_members(own, steps, steps_weight)
    described = f"{ensemble}, {len(own)} members"
    if weights is not None:
        described += f" pooled with {len(members) - len(own)} STEPS members at weight {steps_weight:g}"
    levels = np.array([RANK[assess(observed_2h_mm, float(m), rules).level] for m in members])
    p_emergency = member_share(levels >= RANK["emergency"], weights)
    p_advisory = member_share(levels >= RANK["advisory"], weights)
    total = observed_2h_mm + forecast_1h_mm
    low, median, high = published_range_mm or (float(member_quantile(members, q, weights)) for q in (0.1, 0.5, 0.9))
    spread = (f"{described}: forecast 1 h median {median:.1f} mm, 10-90 % {low:.1f}-{high:.1f} mm; "
              f"deterministic forecast 1 h {forecast_1h_mm:.1f} mm; observed 2 h {observed_2h_mm:.1f} mm")
    emergency_rule = (f"emergency (forecast 1 h >= {rules.emergency_1h_mm:g} mm, or >= {rules.emergency_combined_1h_mm:g} mm "
                      f"with 3 h >= {rules.emergency_combined_3h_mm:g} mm)")
    advisory_rule = f"advisory (3 h >= {rules.advisory_3h_mm:g} mm)"
    emergency_p = f"{p_emergency:.2f} of {emergency_rule}"
    advisory_p = f"{p_advisory:.2f} of {advisory_rule}"
    if p_emergency >= alert_probability:
        level, p, why = "emergency", p_emergency, f"probability {p_emergency:.2f} >= {alert_probability:g} of {emergency_rule}"
    elif p_advisory >= alert_probability:
        level, p, why = "advisory", p_advisory, f"probability {p_advisory:.2f} >= {alert_probability:g} of {advisory_rule}; {emergency_p}"
    else:
        level, p, why = "none", p_advisory, f"probability {emergency_p}, {advisory_p}: both below the alert probability {alert_probability:g}"
    return Assessment(level, observed_2h_mm, forecast_1h_mm, total, f"{why} ({spread})", p)


def observed_depth_mm(means_mm_h: Sequence[float | None], scan_minutes: float = SCAN_MINUTES) -> float:
    """Depth (mm) of observed catchment-mean rates, each held ``scan_minutes``; missing scans count as dry."""
    return float(sum(m for m in means_mm_h if m is not None) * scan_minutes / 60.0)


def observed_scan_times(issue_time: datetime, hours: float = OBSERVED_HOURS) -> list[datetime]:
    """The scan times whose rates make up the observed depth before ``issue_time`` (t-110 .. t for 2 h)."""
    n = int(round(hours * 60 / SCAN_MINUTES))
    return [issue_time - SCAN_INTERVAL * k for k in range(n - 1, -1, -1)]


def catchment_means(rain_mm_h: np.ndarray, dams: Sequence[Dam]) -> dict[str, float | None]:
    """:func:`nowcast_core.dams.catchment_means` of an observed field whose rates are first rounded
    as stored forecasts are (:func:`nowcast_core.io.fields.quantize`: the feed's no-echo floor is
    dry; no data stays NaN), so observed and forecast depths add up on the same scale."""
    from nowcast_core.io.fields import quantize

    return dams_catchment_means(quantize(rain_mm_h), dams)


def backoff_seconds(attempts: int, base_s: float, cap_s: float = 3600.0) -> float:
    """Wait before the next delivery try after ``attempts`` failed ones: base, 2 base, 4 base ... capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))


def change_payload(*, dam: Dam, issue_time: datetime, from_level: str, to_level: str, assessment: Assessment,
                   change_id: int | None = None) -> dict:
    """The JSON body of one webhook notification."""
    return {
        "event": "alert_level_changed",
        "change_id": change_id,
        "dam": dam.id,
        "dam_name": dam.name,
        "issue_time": iso_utc(issue_time),
        "from_level": from_level,
        "to_level": to_level,
        "direction": "rise" if RANK[to_level] > RANK[from_level] else "fall",
        "forecast_1h_mm": round(assessment.forecast_1h_mm, 2),
        "observed_2h_mm": round(assessment.observed_2h_mm, 2),
        "total_3h_mm": round(assessment.total_3h_mm, 2),
        "probability": None if assessment.probability is None else round(assessment.probability, 3),
        "reason": assessment.reason,
    }


# --- stored alerts (database) -------------------------------------------------------------------


class ScanMeans:
    """Catchment means of archived scans, each scan read once (bounded cache)."""

    def __init__(self, session, dams: Sequence[Dam], archive: Path, max_items: int = 256):
        self._session, self._dams, self._archive, self._max = session, dams, archive, max_items
        self._cache: dict[datetime, dict[str, float | None]] = {}

    def get(self, times: Sequence[datetime]) -> dict[datetime, dict[str, float | None]]:
        from sqlalchemy import select

        from nowcast_core.db.schema import FrameRecord
        from nowcast_core.inbox.ingest import load_rain_rates

        missing = [t for t in times if t not in self._cache]
        if missing:
            for record in self._session.scalars(select(FrameRecord).where(FrameRecord.scan_time.in_(missing))):
                if len(self._cache) >= self._max:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[record.scan_time] = catchment_means(load_rain_rates(record, self._archive), self._dams)
        return {t: self._cache[t] for t in times if t in self._cache}


def update_alerts(sessions, dams: Sequence[Dam], archive: Path, *, rules: AlertRules, webhooks: Sequence[str] = (),
                  notify_max_age: timedelta = timedelta(hours=1), lookback: timedelta = timedelta(hours=73),
                  alert_probability: float = 0.5) -> int:
    """Assess every production run (issued within ``lookback`` of the newest scan) that has no levels yet.

    Oldest first, one transaction per run. A run with a production ensemble is assessed on its
    members' forecast hour (:func:`assess_probabilistic`), else on the deterministic forecast. A change is notified when the run is the dam's newest
    assessment, lies within ``notify_max_age`` of the newest scan, and its level differs from the
    level last notified for the dam. Returns the number of runs assessed.
    """
    from sqlalchemy import func, select
    from sqlalchemy.exc import IntegrityError

    from nowcast_core.db.schema import (
        AlertChange,
        DamAlert,
        DamProbability,
        DamRainfall,
        EnsembleRun,
        ForecastRun,
        FrameRecord,
        WebhookOutbox,
    )

    by_id = {d.id: d for d in dams}
    n = 0
    with sessions() as session:
        newest = session.scalar(select(func.max(FrameRecord.scan_time)))
        if newest is None:
            return 0
        done = select(DamAlert.run_id)
        runs = list(session.scalars(
            select(ForecastRun).where(ForecastRun.is_production, ForecastRun.status == "ok",
                                      ForecastRun.issue_time >= newest - lookback, ForecastRun.id.not_in(done))
            .order_by(ForecastRun.issue_time)))
        means = ScanMeans(session, dams, archive)
        for run in runs:
            depth_1h = dict(session.execute(select(DamRainfall.dam_id, DamRainfall.depth_mm).where(
                DamRainfall.run_id == run.id, DamRainfall.lead_minutes == 60)).all())
            ensemble = session.scalar(select(EnsembleRun).where(EnsembleRun.run_id == run.id, EnsembleRun.is_production))
            members_1h = {} if ensemble is None else {dam_id: rest for dam_id, *rest in session.execute(
                select(DamProbability.dam_id, DamProbability.accum_mm_members, DamProbability.steps_accum_mm_members,
                       DamProbability.steps_weight, DamProbability.accum_mm_p10, DamProbability.accum_mm_p50,
                       DamProbability.accum_mm_p90).where(
                    DamProbability.ensemble_id == ensemble.id, DamProbability.lead_minutes == 60))}
            observed = means.get(observed_scan_times(run.issue_time))
            fresh = run.issue_time >= newest - notify_max_age
            for dam_id, forecast_mm in depth_1h.items():
                dam = by_id.get(dam_id)
                if dam is None:  # a dam removed from the dams file since the run
                    continue
                observed_mm = observed_depth_mm([m.get(dam_id) for m in observed.values()])
                own, steps, steps_weight, *published = members_1h.get(dam_id) or ((), None, None)
                if own:
                    a = assess_probabilistic(observed_mm, forecast_mm, own, rules, alert_probability, ensemble.method,
                                             steps, steps_weight, tuple(published) if published else None)
                else:
                    a = assess(observed_mm, forecast_mm, rules)
                    a = replace(a, reason=f"{a.reason}; deterministic: no ensemble for this run")
                if not run.input_ok and a.level != "none":  # never an alert from input that cannot be trusted
                    a = replace(a, level="none", reason=f"{a.level} withheld: input {run.input_quality} ({a.reason})")
                before = session.scalar(select(DamAlert.level).where(DamAlert.dam_id == dam_id,
                                                                     DamAlert.issue_time < run.issue_time)
                                        .order_by(DamAlert.issue_time.desc()).limit(1)) or "none"
                later = session.scalar(select(func.count(DamAlert.id)).where(DamAlert.dam_id == dam_id,
                                                                             DamAlert.issue_time > run.issue_time))
                row = DamAlert(run=run, dam_id=dam_id, issue_time=run.issue_time, level=a.level, previous_level=before,
                               observed_2h_mm=a.observed_2h_mm, observed_scans=len(observed),
                               forecast_1h_mm=a.forecast_1h_mm, total_3h_mm=a.total_3h_mm, reason=a.reason,
                               probability=a.probability)
                session.add(row)
                notified = session.scalar(select(AlertChange.to_level).where(AlertChange.dam_id == dam_id)
                                          .order_by(AlertChange.id.desc()).limit(1)) or "none"
                if fresh and not later and a.level != notified:
                    change = AlertChange(alert=row, dam_id=dam_id, issue_time=run.issue_time, from_level=notified,
                                         to_level=a.level, payload={})
                    session.add(change)
                    session.flush()
                    change.payload = change_payload(dam=dam, issue_time=run.issue_time, from_level=notified,
                                                    to_level=a.level, assessment=a, change_id=change.id)
                    for url in dict.fromkeys(webhooks):
                        session.add(WebhookOutbox(change=change, url=url, next_attempt_at=datetime.now(UTC)))
                    log.info("alert %s: %s -> %s at %s (%s)", dam_id, notified, a.level, iso_utc(run.issue_time), a.reason)
            try:
                session.commit()
                n += 1
            except IntegrityError:  # assessed meanwhile by another process
                session.rollback()
    return n


__all__ = ["LEVELS", "AlertRules", "Assessment", "assess", "assess_probabilistic", "backoff_seconds", "catchment_means", "change_payload",
           "observed_depth_mm", "observed_scan_times", "update_alerts"]
