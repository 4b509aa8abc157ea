"""Retention: the forecast and probability files of old runs are deleted; their rows stay.

A cycle stores about 0.2 MB, most of it forecast files (a deterministic field per method, the
exceedance probabilities of each ensemble). Files of runs issued more than ``keep`` before the newest
registered scan are deleted and the run is marked (``files_pruned_at``); its dam results, alerts
and verification stay in the database, so the skill, alert and forecast queries are unchanged.
The scans in the archive are never pruned: they are the record, and retraining reads them.

The age is counted from the newest scan, not the wall clock: a feed that stops for a month keeps
its last ``keep`` of forecasts, and a replay of old scans keeps its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nowcast_core.db.schema import EnsembleRun, ForecastRun, FrameRecord, ServiceState
from nowcast_core.times import iso_minutes, iso_utc

log = logging.getLogger(__name__)

#: Runs marked per commit.
COMMIT_EVERY = 200
#: (table, the column holding its file's path relative to the forecasts folder, the report's count of its runs)
_FILES = ((ForecastRun, "field_path", "forecast_runs"), (EnsembleRun, "probability_path", "ensemble_runs"))


@dataclass
class PruneReport:
    """What one pruning did (or, with ``dry_run``, would do)."""

    before: datetime | None  #: files of runs issued before this were pruned (None: no scan yet)
    forecast_runs: int = 0  #: deterministic runs marked as pruned
    ensemble_runs: int = 0  #: ensemble runs marked as pruned
    files: int = 0  #: files deleted
    bytes: int = 0  #: their size
    already_gone: int = 0  #: files that were missing already (the run is marked all the same)
    failed: int = 0  #: files that could not be deleted (left, the run not marked: retried next time)
    more: bool = False  #: runs past the retention remain (``max_runs`` reached)
    dry_run: bool = False

    @property
    def runs(self) -> int:
        return self.forecast_runs + self.ensemble_runs

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (f"{verb} {_count(self.files, 'forecast file')} ({self.bytes / 1e6:.1f} MB) of "
                f"{_count(self.forecast_runs, 'forecast run')} and {_count(self.ensemble_runs, 'ensemble run')} "
                f"issued before {iso_minutes(self.before)}")
        if self.already_gone:
            text += f"; {self.already_gone} were already gone"
        if self.failed:
            text += f"; {self.failed} could not be deleted (kept, retried next time)"
        if self.more:
            text += "; more remain for the next pruning"
        return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def retention_start(session: Session, keep: timedelta) -> datetime | None:
    """The issue time before which files are pruned: ``keep`` before the newest registered scan."""
    newest = session.scalar(select(func.max(FrameRecord.scan_time)))
    return None if newest is None else newest - keep


def _file(root: Path, relpath: str) -> Path | None:
    """The stored file, if its recorded path lies inside the (resolved) forecasts folder ``root`` (it always
    should)."""
    path = (root / relpath).resolve()
    return path if path.is_relative_to(root) and path != root else None


def prune_forecast_files(session: Session, forecasts_dir: Path, keep: timedelta, *, max_runs: int | None = None,
                         dry_run: bool = False, now: datetime | None = None) -> PruneReport:
    """Delete the files of runs issued more than ``keep`` before the newest scan, oldest first, at most
    ``max_runs`` runs (None: all); mark each run whose file is gone. A run is marked only after its file
    is deleted, so a crash in between leaves missing files that the next pruning marks, never a mark
    on a file still there."""
    before = retention_start(session, keep)
    report = PruneReport(before=before, dry_run=dry_run)
    if before is None:
        return report
    now = now or datetime.now(UTC)
    root = Path(forecasts_dir).resolve()
    budget = max_runs
    days = set()
    for table, column, counter in _FILES:
        if budget == 0:
            break
        q = (select(table).where(table.issue_time < before, table.files_pruned_at.is_(None))
             .order_by(table.issue_time, table.id))
        runs = list(session.scalars(q if budget is None else q.limit(budget)))
        if budget is not None:
            budget -= len(runs)
        for k, run in enumerate(runs, 1):
            if _prune_run(run, column, root, report, days):
                setattr(report, counter, getattr(report, counter) + 1)
                if not dry_run:
                    run.files_pruned_at = now
            if k % COMMIT_EVERY == 0:
                session.commit()
        session.commit()
    if max_runs is not None and not dry_run:
        remaining = sum(session.scalar(select(func.count()).select_from(table).where(
            table.issue_time < before, table.files_pruned_at.is_(None))) for table, _, _ in _FILES)
        report.more = remaining > report.failed
    if not dry_run:
        _remove_empty(days, root)
    return report


def _prune_run(run, column: str, root: Path, report: PruneReport, days: set[Path]) -> bool:
    """Delete one run's file under the (resolved) forecasts folder ``root``, counted in ``report``; whether
    the run may be marked as pruned."""
    relpath = getattr(run, column)
    path = _file(root, relpath) if relpath else None
    if relpath and path is None:
        log.warning("run %d: stored path %r is outside the forecasts folder; not deleted", run.id, relpath)
    elif path is not None:
        try:
            size = path.stat().st_size
            if not report.dry_run:
                path.unlink()
        except FileNotFoundError:
            report.already_gone += 1
        except OSError as exc:
            report.failed += 1
            log.warning("forecast file %s not deleted: %s", path, exc.strerror or exc)
            return False
        else:
            report.files += 1
            report.bytes += size
            days.add(path.parent)
    return True


def _remove_empty(folders: set[Path], root: Path) -> None:
    """Remove the day folders (``YYYY/MM/DD``) emptied by a pruning, and their month and year folders
    once empty; a folder that is not empty stays."""
    for folder in sorted(folders, reverse=True):
        for path in (folder, folder.parent, folder.parent.parent):
            if path == root or not path.is_relative_to(root):
                break
            try:
                path.rmdir()
            except OSError:  # not empty (or gone): the rest of its day is still kept
                break


def record_prune(session: Session, report: PruneReport | None, error: str | None = None,
                 now: datetime | None = None) -> None:
    """Remember the last pruning (``last_prune`` in the service state) for status, the page and /metrics in
    any process: what it did, or the error that stopped it."""
    state = session.get(ServiceState, "last_prune") or ServiceState(key="last_prune")
    state.value = {"at": iso_utc(now or datetime.now(UTC), "seconds"),
                   "done": report.describe() if report is not None and report.before is not None else None,
                   "failed_files": report.failed if report is not None else 0, "error": error}
    session.add(state)
    session.commit()


def last_prune(session: Session) -> dict | None:
    """The last pruning recorded by :func:`record_prune`: ``at``, ``done``, ``failed_files``, ``error``."""
    state = session.get(ServiceState, "last_prune")
    return dict(state.value) if state is not None and state.value else None


def prune_failing(last: dict | None) -> bool:
    """Whether the last pruning (:func:`last_prune`) failed or left files it could not delete."""
    return bool(last and (last.get("error") or last.get("failed_files")))


def oldest_kept(session: Session) -> datetime | None:
    """The issue time of the oldest deterministic run whose file is kept."""
    return session.scalar(select(func.min(ForecastRun.issue_time)).where(ForecastRun.files_pruned_at.is_(None)))
