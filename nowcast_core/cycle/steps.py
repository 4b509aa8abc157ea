"""The forecast cycle's domain logic: which scans to forecast, forecasting them, storing runs.

An issue time is a registered scan whose three predecessors (t-30, t-20, t-10) are
registered too. Every issue time without a run of a method is pending for that method,
oldest first, except those older than ``max_scan_age`` behind the newest registered scan
(measured from the data, not the wall clock, so a replayed archive is forecast in full).
Each run, its field and its dam results are stored together in one transaction.

Every run stores its ``input_quality``: "ok" when its four input scans are plausible, else
which are not and why (see :mod:`nowcast_core.inbox.plausibility`). Such runs are still issued,
so operators see what the models make of the data, but their dam results carry no alert:
an alert is only ever raised from input that is "ok".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nowcast_core.contract import LEAD_MINUTES, N_INPUTS, SCAN_INTERVAL
from nowcast_core.dams import Dam, dam_rainfall
from nowcast_core.db.schema import DamRainfall, ForecastRun, FrameRecord
from nowcast_core.forecasters import Forecaster
from nowcast_core.inbox.ingest import load_rain_rates
from nowcast_core.inbox.plausibility import input_quality as combine_input_quality
from nowcast_core.io.fields import quantize, save_field
from nowcast_core.times import iso_minutes

log = logging.getLogger(__name__)

INPUT_OFFSETS = tuple(SCAN_INTERVAL * k for k in range(N_INPUTS - 1, -1, -1))  # t-30 .. t
#: Issue times per forecaster call when catching up a backlog (the network is batched over them).
BATCH_ISSUE_TIMES = 32


def complete_issue_times(scan_times: Iterable[datetime]) -> list[datetime]:
    """Scan times that have their three predecessors among ``scan_times``, oldest first."""
    present = set(scan_times)
    return sorted(t for t in present if all(t - dt in present for dt in INPUT_OFFSETS))


@dataclass
class Pending:
    issue_times: list[datetime]
    too_old: list[datetime] = field(default_factory=list)


def pending_issue_times(session: Session, max_scan_age: timedelta, *, method: str | None = None) -> Pending:
    """Issue times still to forecast, oldest first, and those skipped as too old.

    With ``method``: those with no run of that method; without: those with no production run.
    """
    scan_times = list(session.scalars(select(FrameRecord.scan_time)))
    if not scan_times:
        return Pending([])
    done_query = select(ForecastRun.issue_time)
    done_query = done_query.where(ForecastRun.method == method) if method else done_query.where(ForecastRun.is_production)
    done = set(session.scalars(done_query))
    newest = max(scan_times)
    todo = [t for t in complete_issue_times(scan_times) if t not in done]
    cutoff = newest - max_scan_age
    return Pending([t for t in todo if t >= cutoff], [t for t in todo if t < cutoff])


class InputLoader:
    """Rain-rate inputs of issue times, reading each archived scan once per cycle."""

    def __init__(self, session: Session, archive: Path):
        self._session, self._archive = session, archive
        self._cache: dict[datetime, np.ndarray] = {}
        self._quality: dict[datetime, str] = {}

    def _record(self, scan_time: datetime) -> FrameRecord:
        record = self._session.scalar(select(FrameRecord).where(FrameRecord.scan_time == scan_time))
        if record is None:
            raise LookupError(f"scan {iso_minutes(scan_time)} is not registered")
        return record

    def _scan(self, scan_time: datetime) -> np.ndarray:
        if scan_time not in self._cache:
            record = self._record(scan_time)
            self._cache[scan_time] = load_rain_rates(record, self._archive)
            self._quality[scan_time] = record.quality
        return self._cache[scan_time]

    def input_quality(self, issue_time: datetime) -> str:
        """"ok", or which of the issue time's four inputs are implausible and why."""
        inputs = []
        for dt in INPUT_OFFSETS:
            t = issue_time - dt
            if t not in self._quality:
                self._quality[t] = self._record(t).quality
            label = f"t-{int(dt.total_seconds() // 60)}" if dt else "t"
            inputs.append((label, t, self._quality[t]))
        return combine_input_quality(inputs)

    def inputs(self, issue_times: Sequence[datetime]) -> np.ndarray:
        """float32 (n, 4, H, W): rain rates at t-30 .. t of each issue time."""
        x = np.stack([np.stack([self._scan(t - dt) for dt in INPUT_OFFSETS]) for t in issue_times])
        oldest_needed = min(issue_times) - INPUT_OFFSETS[0]
        for t in [t for t in self._cache if t < oldest_needed]:  # issue times come in order: bound memory
            del self._cache[t]
            self._quality.pop(t, None)
        return x


def store_run(session: Session, *, issue_time: datetime, method: str, model_version: str, is_production: bool,
              note: str, rain_rate_mm_h: np.ndarray, started_at: datetime, forecast_seconds: float,
              forecasts_dir: Path, dams: Sequence[Dam], input_quality: str) -> ForecastRun | None:
    """Store one run, its field and its dam results in one transaction (None if it already exists).

    A run whose ``input_quality`` is not "ok" is stored with it, and its results carry no alert.
    """
    rain = quantize(rain_rate_mm_h)
    rel, checksum = save_field(forecasts_dir, issue_time, method, rain)
    run = ForecastRun(issue_time=issue_time, method=method, model_version=model_version, is_production=is_production,
                      status="ok", note=note, started_at=started_at,
                      forecast_seconds=forecast_seconds, field_path=rel, field_checksum=checksum,
                      input_quality=input_quality)
    for r in dam_rainfall(rain, dams, LEAD_MINUTES):
        if not run.input_ok:
            r = {**r, "alert": None}  # never an alert from implausible input
        run.results.append(DamRainfall(valid_time=issue_time + timedelta(minutes=int(r["lead_minutes"])), **r))
    run.finished_at = datetime.now(UTC)  # the commit's time: "stored_at" of `nowcast forecasts`
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        log.debug("run %s %s already stored by another process", method, f"{iso_minutes(issue_time)}")
        return None
    return run


def forecast_and_store(sessions: sessionmaker[Session], forecaster: Forecaster, issue_times: Sequence[datetime], *,
                       dams: Sequence[Dam], forecasts_dir: Path, archive: Path, is_production: bool, note: str = "",
                       chunk_size: int = BATCH_ISSUE_TIMES, progress=None) -> list[int]:
    """Forecast ``issue_times`` oldest first, ``chunk_size`` issue times per forecaster call (a backlog
    is forecast in batches), and store each run as soon as its batch is forecast, one transaction
    per run; returns the new run ids."""
    run_ids = []
    with sessions() as session:
        loader = InputLoader(session, archive)
        for i in range(0, len(issue_times), chunk_size):
            chunk = list(issue_times[i:i + chunk_size])
            x = loader.inputs(chunk)
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            y = forecaster.forecast(x)
            seconds_each = (time.perf_counter() - t0) / len(chunk)
            for issue_time, rain in zip(chunk, y, strict=True):
                quality = loader.input_quality(issue_time)
                run = store_run(session, issue_time=issue_time, method=forecaster.name, model_version=forecaster.version,
                                is_production=is_production, note=note, rain_rate_mm_h=rain, started_at=started_at,
                                forecast_seconds=seconds_each, forecasts_dir=forecasts_dir, dams=dams,
                                input_quality=quality)
                if run is not None:
                    run_ids.append(run.id)
                    if not run.input_ok:  # the scan itself was reported once when it was registered
                        log.debug("%s run %s from implausible input, stored without alerts: %s", forecaster.name,
                                  iso_minutes(issue_time), quality)
            if progress is not None:
                progress(len(chunk))
    return run_ids


def adopt_as_production(session: Session, method: str, issue_times: Sequence[datetime]) -> int:
    """Mark existing runs of ``method`` (e.g. a baseline run) as the production runs of ``issue_times``."""
    if not issue_times:
        return 0
    runs = session.scalars(select(ForecastRun).where(ForecastRun.method == method, ForecastRun.issue_time.in_(list(issue_times))))
    n = 0
    for run in runs:
        run.is_production = True
        n += 1
    session.commit()
    return n


def latest_scan_time(session: Session) -> datetime | None:
    return session.scalar(select(func.max(FrameRecord.scan_time)))
