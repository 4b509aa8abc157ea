"""Scans the archive holds but the database does not: after a database restored from an older backup,
lost, or dropped by a downgrade. The archive is the record (never pruned), so they can be registered
again: :func:`requeue` copies them back into the inbox, where the ingest validates and registers them as
any delivery (the archived file stays where it is)."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nowcast_core.db.schema import FrameRecord
from nowcast_core.inbox.ingest import archive_path_for
from nowcast_core.io.frames import FrameError, scan_time_from_name


def archived_not_registered(session: Session, archive: Path, *, after_newest: bool = False) -> list[Path]:
    """One archived file per scan time the database has no frame for, oldest first (a name that is no
    scan's is not the archive's and is left out). ``after_newest``: only the archive's day folders from the
    database's newest scan on, what a database restored from an older backup lacks (the daemon's check at
    each start, which must not read years of archive); all of it when the database has no scan."""
    newest = session.scalar(select(func.max(FrameRecord.scan_time))) if after_newest else None
    query = select(FrameRecord.scan_time)
    if newest is not None:
        first_day = newest.replace(hour=0, minute=0, second=0, microsecond=0)
        query = query.where(FrameRecord.scan_time >= first_day)
        first_folder = archive_path_for(Path(archive), newest, "-").parent
        days = [d for d in Path(archive).glob("*/*/*") if d >= first_folder]
        files = [p for d in days for p in d.glob("RDR_*.npz")]
    else:
        files = Path(archive).rglob("RDR_*.npz")
    registered = set(session.scalars(query))
    missing: dict[datetime, Path] = {}
    for path in sorted(files):
        try:
            scan_time = scan_time_from_name(path.name)
        except FrameError:
            continue
        if scan_time not in registered and scan_time not in missing:
            missing[scan_time] = path
    return [missing[t] for t in sorted(missing)]


def requeue(paths: list[Path], inbox: Path) -> list[Path]:
    """Copy archived scans into the inbox under their names (written under a dot name, then renamed, so
    the ingest never reads half a file); a name already waiting there is left alone. Returns those copied."""
    copied = []
    for path in paths:
        dest = Path(inbox) / path.name
        if dest.exists():
            continue
        partial = dest.with_name(f".{path.name}.part")
        shutil.copyfile(path, partial)
        partial.replace(dest)
        copied.append(dest)
    return copied
