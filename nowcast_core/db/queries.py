"""What people ask of stored forecasts, as plain rows (dicts) and arrays."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from nowcast_core.db.schema import (
    DamAlert,
    DamProbability,
    DamRainfall,
    EnsembleRun,
    ForecastRun,
    FrameRecord,
    RejectedFile,
)
from nowcast_core.io.fields import load_field
from nowcast_core.times import iso_utc


def in_period(q, since: datetime | None, until: datetime | None, issue_time=ForecastRun.issue_time):
    """``q`` limited to runs issued in [since, until] (either open); ``issue_time`` the column
    (default the forecast runs', e.g. ``EnsembleRun.issue_time``)."""
    if since is not None:
        q = q.where(issue_time >= since)
    if until is not None:
        q = q.where(issue_time <= until)
    return q


def alert_row(a: DamAlert) -> dict:
    """One stored alert assessment of a dam as a row: its level, the one before, the 3-hour total, the
    ensemble's probability of the level's rule (of the advisory rule when the level is none; None when
    assessed without an ensemble) and why."""
    return {"dam": a.dam_id, "issue_time": iso_utc(a.issue_time), "level": a.level, "previous_level": a.previous_level,
            "forecast_1h_mm": round(a.forecast_1h_mm, 2), "observed_2h_mm": round(a.observed_2h_mm, 2),
            "total_3h_mm": round(a.total_3h_mm, 2), "observed_scans": a.observed_scans,
            "probability": None if a.probability is None else round(a.probability, 4), "reason": a.reason}


def current_levels(session: Session) -> list[DamAlert]:
    """The newest stored alert assessment per dam."""
    newest = select(DamAlert.dam_id, func.max(DamAlert.issue_time).label("t")).group_by(DamAlert.dam_id).subquery()
    return list(session.scalars(select(DamAlert).join(newest, (DamAlert.dam_id == newest.c.dam_id)
                                                      & (DamAlert.issue_time == newest.c.t)).order_by(DamAlert.dam_id)))


def current_alert_rows(session: Session, dam: str | None = None) -> list[dict]:
    """Each dam's newest alert assessment as a row (``dam``: that dam only)."""
    return [alert_row(a) for a in current_levels(session) if dam is None or a.dam_id == dam]


def _runs_query(method: str | None, issue_time: datetime | None, since: datetime | None,
                until: datetime | None) -> Select:
    q = select(ForecastRun).where(ForecastRun.status == "ok")
    q = q.where(ForecastRun.method == method) if method else q.where(ForecastRun.is_production)
    if issue_time is not None:
        q = q.where(ForecastRun.issue_time == issue_time)
    return in_period(q, since, until)


def forecast_rows(session: Session, *, dam: str | None = None, issue_time: datetime | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  method: str | None = None) -> list[dict]:
    """Dam rainfall rows of stored runs.

    With no time filter, the latest run only; ``method=None`` means the production runs.
    """
    runs = _runs_query(method, issue_time, since, until)
    if issue_time is None and since is None and until is None:
        latest = session.scalar(select(func.max(runs.subquery().c.issue_time)))
        if latest is None:
            return []
        runs = runs.where(ForecastRun.issue_time == latest)
    run_ids = runs.with_only_columns(ForecastRun.id).scalar_subquery()
    q = (select(DamRainfall, ForecastRun).join(ForecastRun, DamRainfall.run_id == ForecastRun.id)
         .where(DamRainfall.run_id.in_(run_ids))
         .order_by(ForecastRun.issue_time, ForecastRun.method, DamRainfall.dam_id, DamRainfall.lead_minutes))
    if dam:
        q = q.where(DamRainfall.dam_id == dam)
    results = list(session.execute(q))
    probabilities = _dam_probabilities(session, {run.id for _, run in results})
    return [
        {
            "issue_time": iso_utc(run.issue_time),
            "dam": r.dam_id,
            "lead_minutes": r.lead_minutes,
            "valid_time": iso_utc(r.valid_time),
            "mean_mm_h": round(r.mean_mm_h, 4),
            "max_mm_h": round(r.max_mm_h, 4),
            "wet_fraction": round(r.wet_fraction, 4),
            "depth_mm": round(r.depth_mm, 4),
            "dam_pixel_mm_h": round(r.dam_pixel_mm_h, 4),
            "alert": r.alert,
            "method": run.method,
            "model_version": run.model_version,
            "input_quality": run.input_quality,
            "stored_at": iso_utc(run.finished_at, "milliseconds"),
            **probabilities.get((run.id, r.dam_id, r.lead_minutes), NO_PROBABILITIES),
        }
        for r, run in results
    ]


#: The probabilistic keys of a forecast row (None where its run has no ensemble, e.g. a baseline).
PROBABILITY_KEYS = ("ensemble", "accum_mm", "accum_mm_p10", "accum_mm_p50", "accum_mm_p90", "prob_accum_ge",
                    "prob_rate_ge")
NO_PROBABILITIES = dict.fromkeys(PROBABILITY_KEYS)


def _dam_probabilities(session: Session, run_ids: set[int]) -> dict[tuple[int, str, int], dict]:
    """The production ensemble's dam rows of runs, by (run id, dam, lead)."""
    if not run_ids:
        return {}
    q = (select(EnsembleRun.run_id, EnsembleRun.method, DamProbability)
         .join(DamProbability, DamProbability.ensemble_id == EnsembleRun.id)
         .where(EnsembleRun.run_id.in_(list(run_ids)), EnsembleRun.is_production))
    return {(run_id, p.dam_id, p.lead_minutes): {
        "ensemble": method,
        "accum_mm": round(p.accum_mm, 4),
        "accum_mm_p10": round(p.accum_mm_p10, 4),
        "accum_mm_p50": round(p.accum_mm_p50, 4),
        "accum_mm_p90": round(p.accum_mm_p90, 4),
        "prob_accum_ge": {k: round(v, 4) for k, v in p.prob_accum_ge.items()},
        "prob_rate_ge": {k: round(v, 4) for k, v in p.prob_rate_ge.items()},
    } for run_id, method, p in session.execute(q)}


def export_probabilities(session: Session, forecasts_dir: Path, *, since: datetime | None = None,
                         until: datetime | None = None) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Stored exceedance probabilities of the production ensemble: ISO issue times, thresholds (mm/h),
    float32 (n, 6, n_thresholds, H, W) and each one's ensemble method, oldest first (issue times without
    an ensemble, or whose file was pruned, are left out), and the issue times left out because their file
    is missing."""
    from nowcast_core.contract import THRESHOLDS_MM_H
    from nowcast_core.io.fields import load_probability

    q = (select(EnsembleRun).where(EnsembleRun.is_production, EnsembleRun.files_pruned_at.is_(None))
         .order_by(EnsembleRun.issue_time))
    runs = list(session.scalars(in_period(q, since, until, EnsembleRun.issue_time)))
    thresholds = np.asarray(THRESHOLDS_MM_H, np.float64)
    runs, loaded, missing = _readable(runs, lambda r: load_probability(forecasts_dir, r.probability_path,
                                                                        r.probability_checksum))
    fields = [p for p, _ in loaded]
    thresholds = loaded[0][1] if loaded else thresholds
    array = np.stack(fields).astype(np.float32) if fields else np.zeros((0, 6, len(thresholds), 120, 120), np.float32)
    return [iso_utc(r.issue_time) for r in runs], thresholds, array, [r.method for r in runs], missing


def _readable(runs, load) -> tuple[list, list, list[str]]:
    """The runs whose file loads, their loaded files, and the issue times of those whose file is missing
    though not pruned (deleted by hand, or its mark lost by a database downgrade)."""
    kept, loaded, missing = [], [], []
    for r in runs:
        try:
            loaded.append(load(r))
        except FileNotFoundError:
            missing.append(iso_utc(r.issue_time))
            continue
        kept.append(r)
    return kept, loaded, missing


def frame_rows(session: Session, *, rejected: bool = False, archive: Path | None = None) -> list[dict]:
    """Registered scans, or with ``rejected`` the quarantined files and their reasons.

    With ``archive`` a scan's ``archive_path`` is where its file is now (recorded relative to it)."""

    if rejected:
        return [
            {"file": r.file_name, "reason_kind": r.reason_kind, "reason": r.reason,
             "quarantine_path": r.quarantine_path, "rejected_at": iso_utc(r.rejected_at, "milliseconds")}
            for r in session.scalars(select(RejectedFile).order_by(RejectedFile.rejected_at, RejectedFile.id))
        ]
    return [
        {"scan_time": iso_utc(f.scan_time), "checksum": f.checksum, "archive_path": f.archive_path if archive is None else str(f.archived_file(archive)),
         "arrived_at": iso_utc(f.arrived_at, "milliseconds"), "received_at": iso_utc(f.received_at, "milliseconds"),
         "wet_fraction": round(f.wet_fraction, 4), "nodata_fraction": round(f.nodata_fraction, 4),
         "mean_mm_h": None if f.mean_mm_h is None else round(f.mean_mm_h, 4), "quality": f.quality}
        for f in session.scalars(select(FrameRecord).order_by(FrameRecord.scan_time))
    ]


def export_fields(session: Session, forecasts_dir: Path, *, since: datetime | None = None,
                  until: datetime | None = None, method: str | None = None) -> tuple[list[str], np.ndarray]:
    """Stored forecast fields: ISO issue times and float32 rain rates (n, 6, H, W), oldest first, and the
    issue times left out because their file is missing; runs whose file was pruned (:func:`pruned_runs`)
    are left out too."""
    runs: Sequence[ForecastRun] = list(session.scalars(
        _runs_query(method, None, since, until).where(ForecastRun.files_pruned_at.is_(None))
        .order_by(ForecastRun.issue_time)))
    runs, fields, missing = _readable(runs, lambda r: load_field(forecasts_dir, r.field_path, r.field_checksum))
    array = np.stack(fields).astype(np.float32) if fields else np.zeros((0, 6, 120, 120), np.float32)
    return [iso_utc(r.issue_time) for r in runs], array, missing


def pruned_runs(session: Session, *, since: datetime | None = None, until: datetime | None = None,
                method: str | None = None) -> tuple[int, datetime | None]:
    """How many stored runs (``method=None``: production) of the period have had their file pruned, and
    the newest one's issue time."""
    q = _runs_query(method, None, since, until).where(ForecastRun.files_pruned_at.is_not(None)).subquery()
    n, newest = session.execute(select(func.count(), func.max(q.c.issue_time))).one()
    return n, newest
