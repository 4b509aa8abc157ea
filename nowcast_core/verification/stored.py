"""Verification stored in the database, and skill aggregated from it.

:func:`verify_pending` scores every (run, lead) whose valid-time scan has arrived and
stores the counts; :func:`skill_rows` sums those counts over any span and grouping.

Stored per (run, lead), all additive, so that any period or grouping scores exactly as if its
fields were one:

- ``lead_verification``: valid pixels and the sum of absolute errors, and the area (pixels) at or
  above 5 mm/h in the forecast and in the observation (``area_forecast_px``, ``area_observed_px``);
- ``contingency``: hits, misses, false alarms, correct negatives per threshold (0.1, 1, 5, 10 mm/h);
- ``fss_sums``: per threshold (1, 5 mm/h) and window (1, 5, 15 km) the sums of F^2, O^2 and F O of
  :func:`nowcast_core.verification.structure.structure_sums`.

Rows verified before migration 0007 carry no structure sums (NULL areas, no ``fss_sums``): the
FSS and areas of a pool come from the forecasts that carry them, counted in
``n_structure_forecasts``, and are None where none does.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from nowcast_core.contract import LEAD_MINUTES
from nowcast_core.dams import Dam, catchment_means
from nowcast_core.db.queries import in_period
from nowcast_core.db.schema import (
    Contingency,
    DamRainfall,
    ForecastRun,
    FrameRecord,
    FssSums,
    LeadVerification,
)
from nowcast_core.inbox.ingest import load_rain_rates
from nowcast_core.io.fields import load_field, warn_missing
from nowcast_core.verification.scores import COUNT_NAMES, LeadCounts, lead_counts
from nowcast_core.verification.structure import (
    FSS_SIZES_KM,
    FSS_THRESHOLDS_MM_H,
    StructureSums,
    area_keys,
    fss_key,
    structure_sums,
)

log = logging.getLogger(__name__)


def _observed_dam_values(observed: np.ndarray, dams: Sequence[Dam]) -> dict[str, tuple[float | None, float | None]]:
    """(catchment mean, dam pixel) of the observed rain rate per dam (None where there is no data)."""
    means = catchment_means(observed, dams)
    pixels = {dam.id: float(observed[dam.pixel]) for dam in dams}
    return {d: (means[d], p if np.isfinite(p) else None) for d, p in pixels.items()}


def verify_pending(session: Session, forecasts_dir: Path, archive: Path, dams: Sequence[Dam], *,
                   lookback: timedelta | None = timedelta(hours=72)) -> int:
    """Score every stored (run, lead) whose observation has arrived and is not yet scored.

    Only runs issued within ``lookback`` of the newest registered scan are looked at
    (``None``: all), so a cycle's work does not grow with the years of history.
    Returns the number of (run, lead) pairs verified. Each run is committed on its own.
    """
    newest = session.scalar(select(func.max(FrameRecord.scan_time)))
    if newest is None:
        return 0
    start = newest - lookback if lookback is not None else datetime.min.replace(tzinfo=newest.tzinfo)
    scans = dict(session.execute(select(FrameRecord.scan_time, FrameRecord.id)
                                 .where(FrameRecord.scan_time >= start)).all())
    done = defaultdict(set)
    for run_id, lead in session.execute(select(LeadVerification.run_id, LeadVerification.lead_minutes)
                                        .where(LeadVerification.valid_time >= start)):
        done[run_id].add(lead)
    runs = session.scalars(select(ForecastRun).where(ForecastRun.status == "ok", ForecastRun.issue_time >= start,
                                                     ForecastRun.issue_time < newest)
                           .order_by(ForecastRun.issue_time, ForecastRun.id))
    observed_cache: dict[datetime, np.ndarray] = {}
    n, missing = 0, []
    for run in runs:
        todo = [(k, lead) for k, lead in enumerate(LEAD_MINUTES)
                if lead not in done[run.id] and run.issue_time + timedelta(minutes=lead) in scans]
        if not todo:
            continue
        try:
            field = load_field(forecasts_dir, run.field_path, run.field_checksum)
        except FileNotFoundError:
            missing.append(run.issue_time)
            continue
        results = {(r.dam_id, r.lead_minutes): r for r in run.results}
        for k, lead in todo:
            valid_time = run.issue_time + timedelta(minutes=lead)
            if valid_time not in observed_cache:
                record = session.get(FrameRecord, scans[valid_time])
                observed_cache[valid_time] = load_rain_rates(record, archive)
            observed = observed_cache[valid_time]
            counts = lead_counts(field[k], observed)
            structure = structure_sums(field[k], observed)
            session.add(LeadVerification(
                run_id=run.id, lead_minutes=lead, valid_time=valid_time, n_pixels=counts.n_pixels,
                abs_error_sum=counts.abs_error_sum,
                area_forecast_px=structure.area_forecast_px, area_observed_px=structure.area_observed_px,
                contingency=[Contingency(threshold_mm_h=thr, **c) for thr, c in counts.contingency.items()],
                fss_sums=[FssSums(threshold_mm_h=thr, window_km=size, **sums)
                          for (thr, size), sums in structure.fss_sums.items()]))
            for dam_id, (mean, pixel) in _observed_dam_values(observed, dams).items():
                if (dam_id, lead) in results:
                    results[dam_id, lead].observed_mean_mm_h = mean
                    results[dam_id, lead].observed_dam_pixel_mm_h = pixel
            n += 1
        try:
            session.commit()
        except IntegrityError:  # verified meanwhile by another process (the verification flow)
            session.rollback()
            n -= len(todo)
        if len(observed_cache) > 64:
            observed_cache.clear()
    warn_missing(log, "verification", missing)
    return n


def _fmt(x: float, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def structure_pools(session: Session, *, since: datetime | None = None, until: datetime | None = None,
                    by: str = "lead") -> dict[tuple, StructureSums]:
    """Stored structure sums pooled per (method, lead) (``by='lead'``) or per (method,) (``'method'``).

    Only the (run, lead)s that carry structure sums count (``n_forecasts`` of each pool is their
    number); a group none of whose forecasts carries them has no pool. Sums are summed in the
    database per (method, lead), so the work does not grow with the rows read into Python.
    """
    if by not in ("lead", "method"):
        raise ValueError(f"structure sums are pooled by lead or method, not {by!r}")
    carried = LeadVerification.area_forecast_px.is_not(None)
    areas = in_period(
        select(ForecastRun.method, LeadVerification.lead_minutes, func.count(LeadVerification.id),
               func.sum(LeadVerification.area_forecast_px), func.sum(LeadVerification.area_observed_px))
        .join(LeadVerification, LeadVerification.run_id == ForecastRun.id).where(carried)
        .group_by(ForecastRun.method, LeadVerification.lead_minutes), since, until)
    fss = in_period(
        select(ForecastRun.method, LeadVerification.lead_minutes, FssSums.threshold_mm_h, FssSums.window_km,
               func.sum(FssSums.forecast_sq), func.sum(FssSums.observed_sq), func.sum(FssSums.product))
        .join(LeadVerification, LeadVerification.run_id == ForecastRun.id)
        .join(FssSums, FssSums.verification_id == LeadVerification.id).where(carried)
        .group_by(ForecastRun.method, LeadVerification.lead_minutes, FssSums.threshold_mm_h, FssSums.window_km),
        since, until)
    per_lead: dict[tuple, StructureSums] = {}
    for method, lead, n, area_forecast, area_observed in session.execute(areas):
        per_lead[method, lead] = StructureSums(n_forecasts=n, area_forecast_px=int(area_forecast),
                                               area_observed_px=int(area_observed), fss_sums={})
    for method, lead, thr, window, forecast_sq, observed_sq, product in session.execute(fss):
        per_lead[method, lead].fss_sums[float(thr), int(window)] = {
            "forecast_sq": float(forecast_sq), "observed_sq": float(observed_sq), "product": float(product)}
    if by == "lead":
        return per_lead
    pools: dict[tuple, StructureSums] = {}
    for (method, _lead), sums in sorted(per_lead.items()):
        pools.setdefault((method,), StructureSums(fss_sums={})).add(sums)
    return pools


#: The structure keys of a skill row (``fss_1_1km`` .. ``fss_5_15km``, ``area_5_forecast_px``,
#: ``area_5_observed_px``, ``area_ratio_5``), None where no forecast of the group carries them.
STRUCTURE_KEYS = (*(fss_key(thr, size) for thr in FSS_THRESHOLDS_MM_H for size in FSS_SIZES_KM), *area_keys())


def _structure_summary(sums: StructureSums | None) -> dict:
    row = {"n_structure_forecasts": sums.n_forecasts if sums is not None else 0}
    summary = sums.summary(digits=4) if sums is not None and sums.n_forecasts else {}
    return row | {key: summary.get(key) for key in STRUCTURE_KEYS}


def skill_rows(session: Session, *, since: datetime | None = None, until: datetime | None = None,
               by: str = "lead") -> list[dict]:
    """Skill aggregated from stored counts and sums (sums of counts, never means of ratios).

    ``by='lead'``: one row per method and lead; ``'method'``: per method over all leads;
    ``'dam'``: per method and dam, MAE of the catchment mean rain rate.
    Times filter on the runs' issue time.

    Rows by lead and method carry, after the counts' scores (``n_forecasts``, ``mae_mm_h``,
    ``csi_<thr>``, ``pod_<thr>``, ``far_<thr>``), ``n_structure_forecasts`` (how many of the
    forecasts carry structure sums: those verified since migration 0007) and the structure scores
    over those forecasts (:data:`STRUCTURE_KEYS`; None where none carries them). Rows by dam have
    no structure scores: FSS and areas are over the whole field, not a dam's catchment.
    """
    if by == "dam":
        return _dam_skill(session, since, until)
    q = in_period(select(ForecastRun.method, LeadVerification, Contingency)
                   .join(LeadVerification, LeadVerification.run_id == ForecastRun.id)
                   .join(Contingency, Contingency.verification_id == LeadVerification.id), since, until)
    # Stored counts keep no sums of rates: the mean forecast and observed rates are unknown here.
    pools: dict[tuple, LeadCounts] = defaultdict(
        lambda: LeadCounts(forecast_sum=None, observed_sum=None, contingency={}))
    seen: set[int] = set()
    for method, lv, c in session.execute(q):
        key = (method, lv.lead_minutes) if by == "lead" else (method,)
        pool = pools[key]
        if lv.id not in seen:
            seen.add(lv.id)
            pool.n_forecasts += 1
            pool.n_pixels += lv.n_pixels
            pool.abs_error_sum += lv.abs_error_sum
        counts = pool.contingency.setdefault(c.threshold_mm_h, dict.fromkeys(COUNT_NAMES, 0))
        for name in COUNT_NAMES:
            counts[name] += getattr(c, name)
    structure = structure_pools(session, since=since, until=until, by=by)
    rows = []
    for key in sorted(pools):
        row = {"method": key[0]} | ({"lead_minutes": key[1]} if by == "lead" else {})
        rows.append(row | pools[key].summary(digits=4) | _structure_summary(structure.get(key)))
    return rows


def _dam_skill(session: Session, since: datetime | None, until: datetime | None) -> list[dict]:
    q = (select(ForecastRun.method, DamRainfall.dam_id, DamRainfall.mean_mm_h, DamRainfall.observed_mean_mm_h)
         .join(ForecastRun, DamRainfall.run_id == ForecastRun.id)
         .where(DamRainfall.observed_mean_mm_h.is_not(None)))
    q = in_period(q, since, until)
    sums: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for method, dam_id, forecast, observed in session.execute(q):
        s = sums[method, dam_id]
        s[0] += 1
        s[1] += abs(forecast - observed)
        s[2] += forecast
        s[3] += observed
    return [{"method": m, "dam": d, "n_forecasts": n, "mae_mm_h": _fmt(err / n), "mean_forecast_mm_h": _fmt(f / n),
             "mean_observed_mm_h": _fmt(o / n)} for (m, d), (n, err, f, o) in sorted(sums.items())]
