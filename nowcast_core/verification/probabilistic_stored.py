"""Verification of stored ensemble runs, and probabilistic skill aggregated from it.

:func:`verify_ensembles` stores, per ensemble run, lead and rain-rate threshold, the additive
counts of its pixel probabilities (:class:`~nowcast_core.verification.probabilistic.ProbCounts`)
once the scan at the valid time has arrived; and per dam and lead, once every scan up to the
valid time has arrived, the observed catchment accumulation, the CRPS of the members'
accumulations and the observation's rank among them. :func:`probabilistic_skill_rows` sums them
over any span: by lead, by dam or by method.
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

from nowcast_core.contract import LEAD_MINUTES, SCAN_INTERVAL
from nowcast_core.dams import Dam, catchment_means
from nowcast_core.db.queries import in_period
from nowcast_core.db.schema import (
    DamProbability,
    EnsembleRun,
    FrameRecord,
    ProbabilityVerification,
)
from nowcast_core.inbox.ingest import load_rain_rates
from nowcast_core.io.fields import load_probability, quantize, warn_missing
from nowcast_core.verification.probabilistic import ProbCounts, crps, rank

HOURS_PER_SCAN = SCAN_INTERVAL.total_seconds() / 3600

log = logging.getLogger(__name__)


def verify_ensembles(session: Session, forecasts_dir: Path, archive: Path, dams: Sequence[Dam], *,
                     lookback: timedelta | None = timedelta(hours=73)) -> int:
    """Verify what has arrived of every ensemble run within ``lookback`` of the newest scan;
    returns the number of (run, lead) pairs whose pixel probabilities were scored."""
    newest = session.scalar(select(func.max(FrameRecord.scan_time)))
    if newest is None:
        return 0
    start = newest - lookback if lookback is not None else None
    scans_q = select(FrameRecord.scan_time, FrameRecord.id)
    runs_q = select(EnsembleRun).where(EnsembleRun.issue_time < newest).order_by(EnsembleRun.issue_time, EnsembleRun.id)
    if start is not None:
        scans_q = scans_q.where(FrameRecord.scan_time >= start)
        runs_q = runs_q.where(EnsembleRun.issue_time >= start)
    scans = dict(session.execute(scans_q).all())
    cache: dict[datetime, np.ndarray] = {}
    means_cache: dict[datetime, dict] = {}

    def observed(t: datetime) -> np.ndarray:
        if t not in cache:
            cache[t] = load_rain_rates(session.get(FrameRecord, scans[t]), archive)
        return cache[t]

    def observed_means(t: datetime) -> dict:
        if t not in means_cache:
            means_cache[t] = catchment_means(quantize(observed(t)), dams)
        return means_cache[t]

    n, missing = 0, []
    for run in list(session.scalars(runs_q)):
        done = {lead for (lead,) in session.execute(select(ProbabilityVerification.lead_minutes)
                                                     .where(ProbabilityVerification.ensemble_id == run.id).distinct())}
        todo = [(k, lead) for k, lead in enumerate(LEAD_MINUTES)
                if lead not in done and run.issue_time + timedelta(minutes=lead) in scans]
        pending_dams = [r for r in run.dams if r.observed_accum_mm is None]
        if not todo and not pending_dams:
            continue
        if todo:
            try:
                prob, thresholds = load_probability(forecasts_dir, run.probability_path, run.probability_checksum)
            except FileNotFoundError:
                missing.append(run.issue_time)
                todo = []
            for k, lead in todo:
                valid_time = run.issue_time + timedelta(minutes=lead)
                obs = observed(valid_time)
                for j, thr in enumerate(thresholds):
                    c = ProbCounts.of(prob[k, j], obs, float(thr))
                    session.add(ProbabilityVerification(
                        ensemble_id=run.id, lead_minutes=lead, valid_time=valid_time, threshold_mm_h=float(thr),
                        n_pixels=c.n, brier_sum=c.brier_sum, bin_n=c.bin_n, bin_prob_sum=c.bin_prob_sum,
                        bin_events=c.bin_events))
                n += 1
        rng = np.random.default_rng([run.id])  # ties in the rank histogram, reproducibly
        for row in pending_dams:
            times = [run.issue_time + timedelta(minutes=lead) for lead in LEAD_MINUTES if lead <= row.lead_minutes]
            if not all(t in scans for t in times):
                continue
            values = [observed_means(t).get(row.dam_id) for t in times]
            if any(v is None for v in values):  # the radar did not see the catchment: not verifiable
                continue
            accum = float(sum(values) * HOURS_PER_SCAN)
            row.observed_accum_mm = accum
            row.crps_accum_mm = crps(row.accum_mm_members, accum)
            row.observed_rank = rank(row.accum_mm_members, accum, rng)
        try:
            session.commit()
        except IntegrityError:  # verified meanwhile by another process
            session.rollback()
        if len(cache) > 64:
            cache.clear()
            means_cache.clear()
    warn_missing(log, "probabilistic verification", missing)
    return n


def _fmt(x, digits: int = 4):
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


#: The keys of :func:`probabilistic_skill_rows` that hold lists (the reliability diagram, the rank histogram):
#: for JSON; a table or CSV shows the rest (:func:`without_lists`).
LIST_KEYS = ("reliability_diagram", "rank_histogram")


def without_lists(rows: list[dict]) -> list[dict]:
    """``rows`` without their :data:`LIST_KEYS`: one value per cell."""
    return [{k: v for k, v in r.items() if k not in LIST_KEYS} for r in rows]


def probabilistic_skill_rows(session: Session, *, since: datetime | None = None, until: datetime | None = None,
                             by: str = "lead") -> list[dict]:
    """Probabilistic skill from stored counts: ``by='lead'`` one row per method, lead and threshold;
    ``'method'`` per method and threshold; ``'dam'`` per method and dam (CRPS and rank histogram of
    the catchment accumulation). Times filter on the runs' issue time."""
    if by not in ("lead", "method", "dam"):
        raise ValueError(f"by must be lead, method or dam, got {by!r}")

    def window(q):
        return in_period(q, since, until, EnsembleRun.issue_time)

    # Catchment accumulation: CRPS sums and rank counts per (method, lead or dam).
    dam_key = (lambda m, r: (m, r.lead_minutes)) if by == "lead" else (
        (lambda m, r: (m, r.dam_id)) if by == "dam" else (lambda m, r: (m,)))
    crps_sum: dict[tuple, list] = defaultdict(lambda: [0, 0.0])
    ranks: dict[tuple, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    members: dict[tuple, int] = {}
    q = window(select(EnsembleRun.method, EnsembleRun.n_members, DamProbability)
               .join(DamProbability, DamProbability.ensemble_id == EnsembleRun.id)
               .where(DamProbability.crps_accum_mm.is_not(None)))
    for method, n_members, r in session.execute(q):
        key = dam_key(method, r)
        crps_sum[key][0] += 1
        crps_sum[key][1] += r.crps_accum_mm
        ranks[key][r.observed_rank] += 1
        members[key] = max(members.get(key, 0), n_members)

    def dam_part(key) -> dict:
        n, total = crps_sum.get(key, (0, 0.0))
        hist = ([ranks[key].get(k, 0) for k in range(members[key] + 1)] if key in members else [])
        return {"n_dam_accumulations": n, "crps_accum_mm": _fmt(total / n) if n else None, "rank_histogram": hist}

    if by == "dam":
        return [{"method": k[0], "dam": k[1], **dam_part(k)} for k in sorted(crps_sum)]

    q = window(select(EnsembleRun.method, ProbabilityVerification)
               .join(ProbabilityVerification, ProbabilityVerification.ensemble_id == EnsembleRun.id))
    pools: dict[tuple, ProbCounts] = defaultdict(ProbCounts)
    runs: dict[tuple, set] = defaultdict(set)
    for method, v in session.execute(q):
        key = (method, v.lead_minutes, v.threshold_mm_h) if by == "lead" else (method, v.threshold_mm_h)
        pools[key].add(ProbCounts(v.n_pixels, v.brier_sum, list(v.bin_n), list(v.bin_prob_sum), list(v.bin_events)))
        runs[key].add(v.ensemble_id)
    rows = []
    for key in sorted(pools):
        row = {"method": key[0]} | ({"lead_minutes": key[1]} if by == "lead" else {})
        row |= {"threshold_mm_h": key[-1], "n_runs": len(runs[key]), **pools[key].summary(digits=4)}
        row["reliability_diagram"] = [[_fmt(b["forecast_probability"]), _fmt(b["observed_frequency"]), b["n"]]
                                      for b in pools[key].reliability_diagram()]
        row |= dam_part(key[:-1])
        rows.append(row)
    return rows


def verified_runs(session: Session, *, since: datetime | None = None, until: datetime | None = None
                  ) -> dict[str, int]:
    """Ensemble runs with stored verification per method (the reference runs for fewer issue times)."""
    q = select(EnsembleRun.method, func.count(func.distinct(EnsembleRun.id))).join(
        ProbabilityVerification, ProbabilityVerification.ensemble_id == EnsembleRun.id)
    q = in_period(q, since, until, EnsembleRun.issue_time)
    return {method: int(n) for method, n in session.execute(q.group_by(EnsembleRun.method))}


def reliability_counts(session: Session, *, since: datetime | None = None, until: datetime | None = None
                       ) -> dict[tuple[str, float], ProbCounts]:
    """Summed counts per (method, threshold) over all leads: the reliability diagram's data."""
    q = select(EnsembleRun.method, ProbabilityVerification).join(
        ProbabilityVerification, ProbabilityVerification.ensemble_id == EnsembleRun.id)
    q = in_period(q, since, until, EnsembleRun.issue_time)
    out: dict[tuple[str, float], ProbCounts] = defaultdict(ProbCounts)
    for method, v in session.execute(q):
        out[method, v.threshold_mm_h].add(ProbCounts(v.n_pixels, v.brier_sum, list(v.bin_n), list(v.bin_prob_sum),
                                                     list(v.bin_events)))
    return dict(out)
