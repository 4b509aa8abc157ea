"""The inbox: validate each file, archive and register good scans, quarantine bad ones.

Nothing is ever deleted, and nothing one file does stops the others or the cycle:

- a good scan is written to the dated archive from the very bytes that were checked
  (``fsync``, rename, read back and compared), registered with its plausibility
  (``quality``), and only then removed from the inbox, if it has not changed since;
- a file that does not parse yet (empty or not a whole archive) and changed less than
  ``incomplete_grace_s`` ago waits: it may still be arriving. Older, it is quarantined;
- producers' temporary names (hidden, ``*.part``, ``*.tmp``) are left alone;
- a bad file is copied to the dated quarantine (owner-only permissions), its reason
  recorded, then removed from the inbox; a symbolic link is moved there itself, its
  target never opened; a file with an unsafe name is kept under a generated name;
- directories, fifos, sockets and devices are left in place, reported and logged once;
- an identical duplicate of a registered scan moves to ``$NOWCAST_HOME/duplicates``; a
  different file for a registered scan is quarantined as a conflicting duplicate;
- any exception while reading one file quarantines that file (``unreadable``); a failure
  to archive or record (disk full, database) leaves it in the inbox for the next poll.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from nowcast_core.contract import SCAN_INTERVAL
from nowcast_core.db.schema import FrameRecord, RejectedFile
from nowcast_core.inbox.entries import (
    Entry,
    log_unexpected_once,
    safe_name,
    scan_inbox,
    unsafe_name_reason,
)
from nowcast_core.inbox.plausibility import (
    OK,
    QualityThresholds,
    ScanStats,
    assess,
    scan_stats,
)
from nowcast_core.io import (
    MAYBE_INCOMPLETE_KINDS,
    Frame,
    FrameError,
    NotReadyError,
    ScanFile,
    pixel_to_rain_rate,
    read_frame,
    read_scan,
)
from nowcast_core.io import files as durable
from nowcast_core.times import duration_text, iso_minutes

log = logging.getLogger(__name__)

DEFAULT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_QUARANTINE_FILE_MODE = 0o600


@dataclass
class IngestReport:
    """What one poll of the inbox did."""

    registered: list[datetime] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (file, kind, reason)
    waiting: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, error): left in the inbox
    temporary: list[str] = field(default_factory=list)  # producers' temporary names, left alone
    unexpected: list[str] = field(default_factory=list)  # "name (directory)", ...: left, reported
    flagged: list[tuple[datetime, str]] = field(default_factory=list)  # registered, quality not ok

    def summary(self) -> str:
        text = (f"{len(self.registered)} registered, {len(self.duplicates)} identical duplicates, "
                f"{len(self.rejected)} quarantined, {len(self.waiting)} waiting, {len(self.failed)} left for retry")
        if self.flagged:
            text += f", {len(self.flagged)} registered as implausible"
        if self.unexpected:
            text += f", {len(self.unexpected)} unexpected entries left"
        return text


@dataclass(frozen=True)
class IngestRules:
    """How files are judged (from the settings)."""

    settle_seconds: float = 2.0
    incomplete_grace_s: float = 600.0
    future_tolerance: timedelta = timedelta(minutes=15)
    earliest: datetime | None = DEFAULT_EARLIEST
    quality: QualityThresholds = field(default_factory=QualityThresholds)
    #: Names an inbox event announced complete (closed after writing, renamed in): no settle time.
    ready: frozenset[str] = frozenset()


@dataclass
class _Folders:
    home: Path
    archive: Path
    quarantine: Path


def _copy_durably(data: bytes, dest: Path) -> None:
    """Write a scan's bytes (exactly those read and checked) into the archive: fsync, rename, verify."""
    durable.write_verified(data, dest)


def archive_path_for(archive: Path, scan_time: datetime, name: str) -> Path:
    return archive / f"{scan_time:%Y/%m/%d}" / name


def _quarantine_folder(quarantine: Path) -> Path:
    durable.private_dir(quarantine)
    return durable.private_dir(quarantine / f"{datetime.now(UTC):%Y%m%d}", root=quarantine)


def _record_rejection(session: Session, report: IngestReport, file_name: str, dest: Path, kind: str, reason: str,
                      checksum: str | None) -> None:
    session.add(RejectedFile(file_name=file_name, quarantine_path=str(dest), reason_kind=kind, reason=reason,
                             checksum=checksum))
    session.commit()
    report.rejected.append((file_name, kind, reason))
    log.warning("quarantined %s: %s", file_name, reason)


def quarantine_file(session: Session, entry: Entry, quarantine: Path, kind: str, reason: str,
                    report: IngestReport, *, data: bytes | None = None, seen: os.stat_result | None = None,
                    stored_name: str | None = None, checksum: str | None = None) -> Path | None:
    """Copy a bad file to the dated quarantine (0o600), record why, then remove it from the inbox.

    With ``data`` (read when the file had status ``seen``) the copy holds exactly those
    bytes, what was judged. Returns the copy's path, or None if the file changed while it
    was being copied (it is judged again at the next poll).
    """
    name = stored_name or entry.name
    dest = durable.unique_destination(_quarantine_folder(quarantine), name)
    if data is not None:
        copied = durable.write_verified(data, dest, mode=_QUARANTINE_FILE_MODE)
        seen = seen or entry.st
    else:
        copied, seen = durable.copy_verified(entry.path, dest, mode=_QUARANTINE_FILE_MODE)
    if not durable.same_file_state(seen, os.lstat(entry.path)):
        dest.unlink()
        report.waiting.append(name)
        log.info("%s changed while being quarantined; judged again at the next poll", name)
        return None
    _record_rejection(session, report, name, dest, kind, reason, checksum or copied)
    durable.unlink_if_unchanged(entry.path, seen)
    return dest


def _quarantine_link(session: Session, entry: Entry, quarantine: Path, report: IngestReport) -> None:
    name = entry.name if unsafe_name_reason(entry.name) is None else safe_name(entry.name)
    dest = durable.unique_destination(_quarantine_folder(quarantine), name)
    target = durable.move_link(entry.path, dest)
    reason = (f"symlink: {entry.shown!r} is a symbolic link to {ascii(target)}; links are never followed "
              "(its target was not opened)")
    _record_rejection(session, report, name, dest, "symlink", reason, None)


def _file_age_s(entry: Entry) -> float:
    return time.time() - entry.st.st_mtime


def _previous_stats(session: Session, scan_time: datetime) -> ScanStats | None:
    """The scan 10 minutes before, if registered, plausible and with its statistics recorded."""
    prev = session.scalar(select(FrameRecord).where(FrameRecord.scan_time == scan_time - SCAN_INTERVAL))
    if prev is None or prev.quality != OK or prev.mean_mm_h is None:
        return None
    return ScanStats(prev.nodata_fraction, prev.wet_fraction, prev.mean_mm_h, 0.0)


def arrival_time(entry: Entry, now: datetime | None = None) -> datetime:
    """When a file arrived in the inbox: its status-change time (ctime), which a rename into the
    folder or the last write sets (mtime is kept by ``mv``, ``os.rename``, ``cp -p``, ``tar``), at
    the latest ``now``. The same for files announced by an event and files found by the sweep."""
    return min(datetime.fromtimestamp(entry.st.st_ctime, UTC), now or datetime.now(UTC))


def register_frame(session: Session, frame: Frame, archive_file: str,
                   quality_limits: QualityThresholds | None = None, arrived_at: datetime | None = None) -> FrameRecord:
    """Register an archived scan with its statistics, plausibility (``quality``) and arrival time.

    ``archive_file``: the file as :func:`nowcast_core.io.files.stored_path` records it (relative to the archive)."""
    stats = scan_stats(frame.frame, frame.nodata)
    quality = assess(stats, _previous_stats(session, frame.scan_time), quality_limits or QualityThresholds())
    record = FrameRecord(scan_time=frame.scan_time, checksum=frame.checksum, archive_path=archive_file,
                         nodata_fraction=stats.nodata_fraction, wet_fraction=stats.wet_fraction,
                         mean_mm_h=stats.mean_mm_h, quality=quality, arrived_at=arrived_at)
    session.add(record)
    session.commit()
    return record


def _read(entry: Entry, now: datetime, rules: IngestRules) -> ScanFile:
    settle_seconds = 0.0 if entry.name in rules.ready else rules.settle_seconds
    return read_scan(entry.path, now=now, settle_seconds=settle_seconds, future_tolerance=rules.future_tolerance,
                     earliest=rules.earliest, follow_symlinks=False)


def _judge_file(session: Session, entry: Entry, folders: _Folders, now: datetime, rules: IngestRules,
                report: IngestReport) -> ScanFile | None:
    """The scan file if it is good; otherwise it waits, is reported or is quarantined (None)."""
    why_unsafe = unsafe_name_reason(entry.name)
    if why_unsafe is not None:
        stored = safe_name(entry.name)
        reason = f"bad_name: the file name {ascii(os.fsencode(entry.name))} is {why_unsafe}; kept as {stored}"
        quarantine_file(session, entry, folders.quarantine, "bad_name", reason, report, stored_name=stored)
        return None
    try:
        return _read(entry, now, rules)
    except NotReadyError:
        report.waiting.append(entry.name)
        return None
    except FrameError as exc:
        if exc.kind == "not_regular":  # replaced by a directory or fifo since the listing: look again next poll
            report.waiting.append(entry.name)
            return None
        if exc.kind == "symlink":  # replaced by a link since the listing
            _quarantine_link(session, entry, folders.quarantine, report)
            return None
        age_s = _file_age_s(entry)
        reason = str(exc)
        if exc.kind in MAYBE_INCOMPLETE_KINDS:
            if age_s < rules.incomplete_grace_s:
                log.debug("%s does not parse yet (%s); modified %.0f s ago, it may still be arriving",
                          entry.name, exc.kind, age_s)
                report.waiting.append(entry.name)
                return None
            reason += f" (unchanged for {duration_text(age_s)})"
        quarantine_file(session, entry, folders.quarantine, exc.kind, reason, report)
        return None
    except OSError:
        raise  # the machine's trouble (permissions, I/O): left in the inbox, tried again next poll
    except Exception as exc:  # noqa: BLE001 - whatever the file does to the reader, it stops here
        reason = f"unreadable: {type(exc).__name__}: {str(exc)[:200]}"
        quarantine_file(session, entry, folders.quarantine, "unreadable", reason, report)
        return None


def _register_or_drop(session: Session, entry: Entry, scan: ScanFile, folders: _Folders, rules: IngestRules,
                      report: IngestReport) -> None:
    frame = scan.frame
    existing = session.scalar(select(FrameRecord).where(FrameRecord.scan_time == frame.scan_time))
    if existing is not None:
        same_bytes = existing.checksum == frame.checksum
        if same_bytes or _same_scan(existing, frame, folders.archive):
            dest = durable.unique_destination(folders.home / "duplicates" / f"{frame.scan_time:%Y/%m/%d}", entry.name)
            durable.write_verified(scan.data, dest)
            durable.unlink_if_unchanged(entry.path, scan.stat)
            if same_bytes:
                log.debug("identical duplicate of registered scan %s dropped (kept at %s)", entry.name, dest)
            else:  # e.g. re-sent with another zip compression: nothing to chase at the radar
                log.info("duplicate of registered scan %s: the same pixels in a differently encoded file (kept at %s)",
                         entry.name, dest)
            report.duplicates.append(entry.name)
        else:
            reason = (
                f"conflicting_duplicate: scan {iso_minutes(frame.scan_time)} is registered with checksum "
                f"{existing.checksum[:12]}, this file has {frame.checksum[:12]}"
            )
            quarantine_file(session, entry, folders.quarantine, "conflicting_duplicate", reason, report,
                            data=scan.data, seen=scan.stat, checksum=frame.checksum)
        return

    dest = archive_path_for(folders.archive, frame.scan_time, entry.name)
    if os.path.lexists(dest) and durable.file_sha256(dest, follow_links=False) != frame.checksum:
        # An earlier poll archived another file for this scan but did not register it (crash): keep both.
        dest = durable.unique_destination(dest.parent, entry.name)
    if not os.path.lexists(dest):
        _copy_durably(scan.data, dest)
    try:
        record = register_frame(session, frame, durable.stored_path(folders.archive, dest), rules.quality,
                                arrival_time(entry))
    except IntegrityError:
        session.rollback()  # registered concurrently by another process: judge it again next poll
        report.failed.append((entry.name, "registered concurrently"))
        return
    if not durable.unlink_if_unchanged(entry.path, scan.stat):
        log.warning("%s changed after it was read; the registered scan is the one read, the file stays", entry.name)
    report.registered.append(frame.scan_time)
    if record.quality != OK:
        report.flagged.append((frame.scan_time, record.quality))
        log.warning("registered %s as implausible: %s", entry.name, record.quality)
    else:
        log.debug("registered %s", entry.name)


def _same_scan(existing: FrameRecord, frame, archive: Path) -> bool:
    """Whether a file with other bytes holds the registered scan's very pixels and no-data mask (the
    contract allows compressed and uncompressed .npz alike); False where the archived file cannot be read."""
    try:
        registered = read_frame(existing.archived_file(archive))
    except Exception:  # noqa: BLE001 - then it is judged a conflict, as before
        return False
    return bool(np.array_equal(registered.frame, frame.frame) and np.array_equal(registered.nodata, frame.nodata))


def _ingest_entry(session: Session, entry: Entry, folders: _Folders, now: datetime, rules: IngestRules,
                  report: IngestReport) -> None:
    if entry.kind == "symlink":
        _quarantine_link(session, entry, folders.quarantine, report)
        return
    scan = _judge_file(session, entry, folders, now, rules, report)
    if scan is not None:
        _register_or_drop(session, entry, scan, folders, rules, report)


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
    incomplete_grace_s: float = 600.0,
    earliest: datetime | None = DEFAULT_EARLIEST,
    quality: QualityThresholds | None = None,
    ready: Collection[str] = (),
) -> IngestReport:
    """Poll the inbox once: every ready file is registered, dropped as duplicate, quarantined or left waiting.

    A file whose archiving or recording fails (read-only folder, full disk) stays in the
    inbox and is listed in ``report.failed``; the others go on. Only a database that
    cannot be reached at all stops the poll (the cycle retries it; nothing is lost).
    ``ready``: names announced complete by an inbox event (closed after writing, renamed in):
    the settle time applies only to the other files, those found by the sweep.
    """
    rules = IngestRules(settle_seconds=settle_seconds, incomplete_grace_s=incomplete_grace_s,
                        future_tolerance=future_tolerance, earliest=earliest, quality=quality or QualityThresholds(),
                        ready=frozenset(ready))
    folders = _Folders(Path(home), Path(archive), Path(quarantine))
    now = now or datetime.now(UTC)
    report = IngestReport()
    with sessions() as session:
        newest = session.scalar(select(func.max(FrameRecord.scan_time)))
    for entry in scan_inbox(Path(inbox)):
        if entry.kind == "temporary":
            report.temporary.append(entry.shown)
            continue
        if entry.kind == "unexpected":
            report.unexpected.append(f"{entry.shown} ({entry.what})")
            log_unexpected_once(entry)
            continue
        # "Future" is judged against the wall clock or the newest registered scan, whichever is
        # later: a clock that jumps back must not quarantine a feed that simply goes on.
        reference = max(now, newest) if newest is not None else now
        with sessions() as session:
            try:
                _ingest_entry(session, entry, folders, reference, rules, report)
                if report.registered and (newest is None or report.registered[-1] > newest):
                    newest = report.registered[-1]
            except (OperationalError, InterfaceError):
                raise  # the database is unreachable: this poll fails as a whole, the files wait in the inbox
            except FileNotFoundError:
                session.rollback()
                log.info("%s went away while it was being ingested", entry.shown)
            except Exception as exc:  # noqa: BLE001 - one file's trouble never stops the poll
                session.rollback()
                log.error("could not ingest %s, left in the inbox: %s: %s", entry.shown, type(exc).__name__, exc)
                report.failed.append((entry.shown, str(exc)))
    if report.registered or report.rejected or report.duplicates or report.failed:
        log.debug("inbox: %s", report.summary())
    return report


def load_rain_rates(record: FrameRecord, archive: Path) -> np.ndarray:
    """Rain rate (mm/h, float32) of an archived scan, NaN where the radar saw nothing."""
    frame = read_frame(record.archived_file(archive))
    rain = pixel_to_rain_rate(frame.frame)
    rain[frame.nodata] = np.nan
    return rain
