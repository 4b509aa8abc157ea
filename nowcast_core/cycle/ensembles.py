"""The cycle's ensemble step: after the production runs are committed, their ensembles.

- The production ensemble of the newest production runs without one (at most ``max_runs`` per
  cycle, newest first): centred on the run's stored field (the committed forecast itself, not a new
  one), so it costs the perturbations and, where its map pools one, a STEPS run (about 0.8 s in
  all); after downtime the newest run gets its ensemble at once and a backlog catches up over later
  cycles (older runs' alert levels meanwhile come from the deterministic forecast).
- The reference ensemble (pysteps STEPS, for verification beside production), newest issue
  times first, at most ``max_runs`` per cycle: it costs seconds per issue time, so a backlog
  is never held up by it (older issue times get a reference only while the budget allows).

Each ensemble run, its exceedance-probability file and its dam rows are committed together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nowcast_core.contract import THRESHOLDS_MM_H
from nowcast_core.cycle.steps import InputLoader
from nowcast_core.dams import Dam
from nowcast_core.db.schema import DamProbability, EnsembleRun, ForecastRun, FrameRecord
from nowcast_core.ensembles.base import Ensemble
from nowcast_core.ensembles.products import (
    dam_pool_weight,
    dam_probabilities,
    exceedance_probability,
)
from nowcast_core.io.fields import load_field, save_probability, warn_missing
from nowcast_core.times import iso_minutes

log = logging.getLogger(__name__)


def store_ensemble(session: Session, *, issue_time, ensemble: Ensemble, members_mm_h: np.ndarray,
                   centre_mm_h: np.ndarray, run: ForecastRun | None, is_production: bool, seconds: float,
                   input_quality: str, dams: Sequence[Dam], forecasts_dir: Path,
                   steps_members_mm_h: np.ndarray | None = None) -> EnsembleRun | None:
    """Store one ensemble run (its probability file and dam rows) in one transaction; None if it exists.
    ``steps_members_mm_h``: the STEPS members its probability map pools with, if it pools."""
    share = exceedance_probability(members_mm_h, THRESHOLDS_MM_H)  # stored exactly, with the map that publishes it
    probability_map = ensemble.probability_map
    pooled = probability_map is not None and probability_map.pools
    if pooled and steps_members_mm_h is None:  # the STEPS run failed: the map alone, said in the log
        log.warning("%s at %s: published without the pooled STEPS ensemble", ensemble.name, iso_minutes(issue_time))
        probability_map, pooled = replace(probability_map, steps_weight=(), steps_members=0), False
    steps_share = exceedance_probability(steps_members_mm_h, THRESHOLDS_MM_H) if pooled else None
    rel, checksum = save_probability(forecasts_dir, issue_time, ensemble.name, share, THRESHOLDS_MM_H,
                                     members_mm_h.shape[0], probability_map, steps_share)
    row = EnsembleRun(issue_time=issue_time, method=ensemble.name, version=ensemble.version,
                      is_production=is_production, run_id=run.id if run is not None else None,
                      n_members=int(members_mm_h.shape[0]), seed=int(ensemble.seed), seconds=seconds,
                      probability_path=rel, probability_checksum=checksum, input_quality=input_quality)
    for r in dam_probabilities(centre_mm_h, members_mm_h, dams, steps_members_mm_h=steps_members_mm_h,
                               steps_weight=dam_pool_weight(probability_map),
                               range_levels=getattr(ensemble, "dam_range_levels", ())):
        row.dams.append(DamProbability(valid_time=issue_time + timedelta(minutes=int(r["lead_minutes"])), **r))
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        log.debug("ensemble %s %s already stored by another process", ensemble.name, iso_minutes(issue_time))
        return None
    return row


def _window_start(session: Session, lookback: timedelta | None):
    newest = session.scalar(select(func.max(FrameRecord.scan_time)))
    if newest is None:
        return None, None
    return newest, (newest - lookback if lookback is not None else None)


def production_ensembles(sessions: sessionmaker[Session], ensemble_for: Callable[[ForecastRun], Ensemble], *,
                         dams: Sequence[Dam], forecasts_dir: Path, archive: Path,
                         lookback: timedelta | None = timedelta(hours=73),
                         reference: Ensemble | None = None, max_runs: int | None = None) -> list[int]:
    """The production ensemble of the newest ``max_runs`` (None: all) production runs (within
    ``lookback``) that have none, newest first: after downtime the newest run, the one an operator
    reads, gets its ensemble in this cycle and a backlog catches up in later ones.
    ``ensemble_for(run)`` is the ensemble centred on that run's method. Returns new ids.

    Where the production map pools a STEPS ensemble that is the ``reference`` itself (same version:
    pysteps, members, seed), its members are also stored as the reference's run of that issue time, so
    the reference is verified at every issue time without being run twice."""
    ids = []
    with sessions() as session:
        newest, start = _window_start(session, lookback)
        if newest is None:
            return ids
        done = select(EnsembleRun.run_id).where(EnsembleRun.run_id.is_not(None))
        q = select(ForecastRun).where(ForecastRun.is_production, ForecastRun.status == "ok",
                                      ForecastRun.id.not_in(done)).order_by(ForecastRun.issue_time.desc())
        if max_runs is not None:
            q = q.limit(max_runs)
        if start is not None:
            q = q.where(ForecastRun.issue_time >= start)
        runs = list(session.scalars(q))
        if not runs:
            return ids
        loader = InputLoader(session, archive)
        missing = []
        for run in runs:
            ensemble = ensemble_for(run)
            try:
                centre = load_field(forecasts_dir, run.field_path, run.field_checksum)
            except FileNotFoundError:
                missing.append(run.issue_time)
                continue
            x = loader.inputs([run.issue_time])
            t0 = time.perf_counter()
            members = ensemble.members(x, issue_times=[run.issue_time], centre_mm_h=centre[None])[0]
            t1 = time.perf_counter()
            pooled = ensemble.steps_ensemble()
            try:
                steps = None if pooled is None else pooled.members(x, issue_times=[run.issue_time])
            except Exception as exc:  # noqa: BLE001 - pysteps failing on one scan must not stop the ensemble
                log.warning("pooled STEPS ensemble failed at %s: %s", iso_minutes(run.issue_time), exc)
                steps = None
            t2 = time.perf_counter()
            row = store_ensemble(session, issue_time=run.issue_time, ensemble=ensemble, members_mm_h=members,
                                 centre_mm_h=centre, run=run, is_production=True, seconds=time.perf_counter() - t0,
                                 input_quality=run.input_quality, dams=dams, forecasts_dir=forecasts_dir,
                                 steps_members_mm_h=None if steps is None else steps[0])
            if row is not None:
                ids.append(row.id)
            if steps is not None and reference is not None and pooled.version == reference.version:
                store_ensemble(session, issue_time=run.issue_time, ensemble=reference, members_mm_h=steps[0],
                               centre_mm_h=steps[0].mean(axis=0), run=None, is_production=False, seconds=t2 - t1,
                               input_quality=run.input_quality, dams=dams, forecasts_dir=forecasts_dir)
        warn_missing(log, "the production ensemble", missing)
    return ids


def reference_ensembles(sessions: sessionmaker[Session], ensemble: Ensemble, *, dams: Sequence[Dam],
                        forecasts_dir: Path, archive: Path, max_runs: int, lookback: timedelta | None = timedelta(hours=73),
                        failed: set | None = None) -> list[int]:
    """The reference ensemble of the newest ``max_runs`` production issue times that have none.

    Its ``accum_mm`` (it has no deterministic centre) is the ensemble mean's. An issue time the
    reference fails on is logged, added to ``failed`` and not tried again while ``failed`` lives
    (the reference is for verification only: nothing waits for it)."""
    failed = failed if failed is not None else set()
    ids: list[int] = []
    if max_runs <= 0:
        return ids
    with sessions() as session:
        newest, start = _window_start(session, lookback)
        if newest is None:
            return ids
        done = select(EnsembleRun.issue_time).where(EnsembleRun.method == ensemble.name)
        q = (select(ForecastRun).where(ForecastRun.is_production, ForecastRun.status == "ok",
                                       ForecastRun.issue_time.not_in(done))
             .order_by(ForecastRun.issue_time.desc()).limit(max_runs))
        if start is not None:
            q = q.where(ForecastRun.issue_time >= start)
        if failed:
            q = q.where(ForecastRun.issue_time.not_in(list(failed)))
        runs = sorted(session.scalars(q), key=lambda r: r.issue_time)
        loader = InputLoader(session, archive)
        for run in runs:
            x = loader.inputs([run.issue_time])
            t0 = time.perf_counter()
            try:
                members = ensemble.members(x, issue_times=[run.issue_time])[0]
            except Exception as exc:  # noqa: BLE001 - one issue time's failure stops nothing else
                failed.add(run.issue_time)
                log.warning("reference ensemble %s failed at %s, not retried: %s", ensemble.name,
                            iso_minutes(run.issue_time), exc)
                continue
            row = store_ensemble(session, issue_time=run.issue_time, ensemble=ensemble, members_mm_h=members,
                                 centre_mm_h=members.mean(axis=0), run=None, is_production=False,
                                 seconds=time.perf_counter() - t0, input_quality=run.input_quality, dams=dams,
                                 forecasts_dir=forecasts_dir)
            if row is not None:
                ids.append(row.id)
    return ids
