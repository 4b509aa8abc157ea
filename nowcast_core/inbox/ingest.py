"""The inbox: validate each file, archive and register good scans, quarantine bad ones.

Nothing is ever deleted. A good scan is copied into the dated archive (fsync + rename),
registered, and only then removed from the inbox; if the archive cannot be written the
scan stays in the inbox for the next poll. An identical duplicate of a registered scan
moves to ``$NOWCAST_HOME/duplicates``; a different file for a registered scan is
quarantined as a conflicting duplicate. Files whose name starts with a dot are a
producer's temporary files and are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nowcast_core.db.schema import FrameRecord, RejectedFile
from nowcast_core.io import (
    Frame,
    FrameError,
    NotReadyError,
    pixel_to_rain_rate,
    read_frame,
)
from nowcast_core.io.files import atomic_copy, file_sha256
from nowcast_core.times import iso_minutes

log = logging.getLogger(__name__)

WET_MM_H = 0.1


@dataclass
class IngestReport:
    """What one poll of the inbox did."""

    registered: list[datetime] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (file, kind, reason)
    waiting: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, error): left in the inbox

    def summary(self) -> str:
        return (
            f"{len(self.registered)} registered, {len(self.duplicates)} identical duplicates, "
            f"{len(self.rejected)} quarantined, {len(self.waiting)} waiting, {len(self.failed)} left for retry"
        )


def _unique_destination(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    k = 1
    while dest.exists():
        dest = folder / f"{name}.{k}"
        k += 1
    return dest


def _move(src: Path, dest: Path) -> None:
    atomic_copy(src, dest)
    src.unlink()


def archive_path_for(archive: Path, scan_time: datetime, name: str) -> Path:
    return archive / f"{scan_time:%Y/%m/%d}" / name


def quarantine_file(
    session: Session, path: Path, quarantine: Path, kind: str, reason: str, checksum: str | None = None
) -> Path:
    """Move a bad file to the dated quarantine folder and record why."""
    dest = _unique_destination(quarantine / f"{datetime.now(UTC):%Y%m%d}", path.name)
    _move(path, dest)
    session.add(RejectedFile(file_name=path.name, quarantine_path=str(dest), reason_kind=kind, reason=reason, checksum=checksum))
    session.commit()
    log.warning("quarantined %s: %s", path.name, reason)
    return dest


def arrival_time(path: Path, now: datetime | None = None) -> datetime:
    """When a file arrived in the inbox: its status-change time (ctime), which a rename into the
    folder or the last write sets (mtime is kept by ``mv``, ``os.rename``, ``cp -p``, ``tar``), at
    the latest ``now``. The same for files announced by an event and files found by the sweep."""
    arrived = datetime.fromtimestamp(path.stat().st_ctime, UTC)
    return min(arrived, now or datetime.now(UTC))


def register_frame(session: Session, frame: Frame, archive_file: Path,
                   arrived_at: datetime | None = None) -> FrameRecord:
    rain = pixel_to_rain_rate(frame.frame)
    valid = ~frame.nodata
    record = FrameRecord(
        scan_time=frame.scan_time,
        checksum=frame.checksum,
        archive_path=str(archive_file),
        nodata_fraction=float(frame.nodata.mean()),
        wet_fraction=float((rain[valid] >= WET_MM_H).mean()) if valid.any() else 0.0,
        arrived_at=arrived_at,
    )
    session.add(record)
    session.commit()
    return record


def _ingest_one(session: Session, path: Path, home: Path, archive: Path, quarantine: Path,
                now: datetime, settle_seconds: float, future_tolerance: timedelta, report: IngestReport) -> None:
    try:
        arrived_at = arrival_time(path)
        frame = read_frame(path, now=now, settle_seconds=settle_seconds, future_tolerance=future_tolerance)
    except NotReadyError:
        report.waiting.append(path.name)
        return
    except FrameError as exc:
        quarantine_file(session, path, quarantine, exc.kind, str(exc))
        report.rejected.append((path.name, exc.kind, str(exc)))
        return

    existing = session.scalar(select(FrameRecord).where(FrameRecord.scan_time == frame.scan_time))
    if existing is not None:
        if existing.checksum == frame.checksum:
            dest = _unique_destination(home / "duplicates" / f"{frame.scan_time:%Y/%m/%d}", path.name)
            _move(path, dest)
            log.debug("identical duplicate of registered scan %s dropped (kept at %s)", path.name, dest)
            report.duplicates.append(path.name)
        else:
            reason = (
                f"conflicting_duplicate: scan {iso_minutes(frame.scan_time)} is registered with checksum "
                f"{existing.checksum[:12]}, this file has {frame.checksum[:12]}"
            )
            quarantine_file(session, path, quarantine, "conflicting_duplicate", reason, frame.checksum)
            report.rejected.append((path.name, "conflicting_duplicate", reason))
        return

    dest = archive_path_for(archive, frame.scan_time, path.name)
    if dest.exists():
        # An earlier poll archived it but did not finish registering (crash); keep that copy only if identical.
        if file_sha256(dest) != frame.checksum:
            dest = _unique_destination(dest.parent, path.name)
    if not dest.exists():
        atomic_copy(path, dest)
    try:
        register_frame(session, frame, dest, arrived_at)
    except IntegrityError:
        session.rollback()  # registered concurrently by another process: judge it again next poll
        report.failed.append((path.name, "registered concurrently"))
        return
    path.unlink()
    report.registered.append(frame.scan_time)
    log.debug("registered %s", path.name)


def ingest_inbox(
    sessions: sessionmaker[Session],
    *,
    inbox: Path,
    home: Path,
    archive: Path,
    quarantine: Path,
    now: datetime | None = None,
    settle_seconds: float = 2.0,
    future_tolerance: timedelta = timedelta(minutes=15),
    ready: Collection[str] = (),
) -> IngestReport:
    """Poll the inbox once: every ready file is registered, dropped as duplicate or quarantined.

    ``ready``: names announced complete by an inbox event (closed after writing, renamed in):
    the settle time applies only to the other files, those found by the sweep.

    A file whose archiving fails (read-only folder, full disk) stays in the inbox and is
    listed in ``report.failed``; the others go on.
    """
    now = now or datetime.now(UTC)
    report = IngestReport()
    with sessions() as session:
        newest = session.scalar(select(func.max(FrameRecord.scan_time)))
    paths = sorted(p for p in Path(inbox).iterdir() if p.is_file() and not p.name.startswith("."))
    for path in paths:
        # "Future" is judged against the wall clock or the newest registered scan, whichever is
        # later: a clock that jumps back must not quarantine a feed that simply goes on.
        reference = max(now, newest) if newest is not None else now
        with sessions() as session:
            try:
                _ingest_one(session, path, Path(home), Path(archive), Path(quarantine), reference,
                            0.0 if path.name in ready else settle_seconds, future_tolerance, report)
                if report.registered and (newest is None or report.registered[-1] > newest):
                    newest = report.registered[-1]
            except OSError as exc:
                session.rollback()
                log.error("could not ingest %s, left in the inbox: %s", path.name, exc)
                report.failed.append((path.name, str(exc)))
    if report.registered or report.rejected or report.duplicates:
        log.debug("inbox: %s", report.summary())
    return report


def load_rain_rates(record: FrameRecord) -> np.ndarray:
    """Rain rate (mm/h, float32) of an archived scan, NaN where the radar saw nothing."""
    frame = read_frame(record.archive_path)
    rain = pixel_to_rain_rate(frame.frame)
    rain[frame.nodata] = np.nan
    return rain
