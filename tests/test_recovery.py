"""What an unattended daemon meets (operator trial 3): archived scans the database lost are found and
registered again; a re-created inbox is watched again; a re-sent scan in another encoding is a duplicate,
not a conflict; a missing inbox is a status field, not a failed status."""

from __future__ import annotations

import io
import shutil
import threading
import time

import helpers_frames as hf
import numpy as np
from sqlalchemy import delete
from test_cli_errors import nowcast

from nowcast_core.db.schema import FrameRecord
from nowcast_core.inbox.recovery import archived_not_registered, requeue


def test_archived_scans_the_database_lost_are_found_and_registered_again(make_sqlite_service, shared_radar):
    svc = make_sqlite_service()
    hf.deliver(hf.event_files(shared_radar, n=6), svc.settings.inbox)
    assert len(svc.ingest().registered) == 6
    with svc.sessions() as s:
        assert archived_not_registered(s, svc.settings.archive) == []
        kept = sorted(t for t in s.scalars(FrameRecord.__table__.select().with_only_columns(FrameRecord.scan_time)))
        s.execute(delete(FrameRecord).where(FrameRecord.scan_time.in_(kept[2:4])))  # as a restored older backup
        s.commit()
        missing = archived_not_registered(s, svc.settings.archive)
    assert [p.name for p in missing] == [f"RDR_{t:%Y%m%d%H%M}.npz" for t in kept[2:4]]
    archived = {p: p.read_bytes() for p in missing}
    assert len(requeue(missing, svc.settings.inbox)) == 2
    assert requeue(missing, svc.settings.inbox) == []  # already waiting: not copied twice
    assert sorted(svc.ingest().registered) == kept[2:4]
    with svc.sessions() as s:
        assert archived_not_registered(s, svc.settings.archive) == []
    assert all(p.read_bytes() == data for p, data in archived.items())  # the archive is as it was


def test_recover_on_the_command_line(installed_home, capsys, shared_radar):
    code, lines = nowcast(capsys, "recover", "--dry-run")
    assert code == 0 and lines == ["every archived scan is registered: nothing to recover"], lines
    day = installed_home / "archive" / "2017" / "01" / "31"
    day.mkdir(parents=True)
    for f in hf.event_files(shared_radar, n=2):
        shutil.copy(f, day / f.name)  # archived, never registered
    code, lines = nowcast(capsys, "recover", "--dry-run")
    assert code == 0 and "2 archived scans are not in the database" in lines[0] and "nothing copied" in lines[0]
    assert not list((installed_home / "inbox").glob("*.npz"))
    code, lines = nowcast(capsys, "recover")
    assert code == 0 and "copied into the inbox" in lines[0] and "nowcast run --once" in lines[0], lines
    assert len(list((installed_home / "inbox").glob("RDR_*.npz"))) == 2


def test_a_re_created_inbox_is_watched_again(tmp_path):
    from nowcast_core.inbox.watch import InboxWatch

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    seen, arrived = [], threading.Event()

    def on_scan(name, complete):
        seen.append((name, complete))
        if complete:
            arrived.set()

    watch = InboxWatch(inbox, on_scan)
    try:
        assert watch.check() is None
        shutil.rmtree(inbox)
        time.sleep(0.5)  # inotify tells the watcher its folder is gone
        assert watch.check() is None  # missing: nothing to watch (the cycle says so)
        inbox.mkdir()
        assert "re-created: watching it again" in watch.check()
        assert watch.check() is None
        time.sleep(0.2)
        (inbox / "RDR_201701311000.npz").write_bytes(b"x")
        assert arrived.wait(10) and {name for name, _ in seen} == {"RDR_201701311000.npz"}  # created, then closed
    finally:
        watch.stop()
    assert watch.check() is None and not watch.observer.is_alive()  # stopped for good: never started again


def test_a_resent_scan_with_other_bytes_but_the_same_pixels_is_a_duplicate(make_sqlite_service, shared_radar):
    svc = make_sqlite_service()
    first = hf.event_files(shared_radar, n=1)[0]
    hf.deliver([first], svc.settings.inbox)
    assert len(svc.ingest().registered) == 1
    with np.load(first, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # uncompressed: the same pixels, other bytes
    assert buf.getvalue() != first.read_bytes()
    (svc.settings.inbox / first.name).write_bytes(buf.getvalue())
    report = svc.ingest()
    assert report.duplicates == [first.name] and not report.rejected
    key = next(iter(arrays))
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = (int(arrays[key].flat[0]) + 7) % 200  # one pixel differs: a real conflict
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (svc.settings.inbox / first.name).write_bytes(buf.getvalue())
    report = svc.ingest()
    assert [kind for _, kind, _ in report.rejected] == ["conflicting_duplicate"] and not report.duplicates


def test_a_missing_inbox_is_a_status_field(make_sqlite_service):
    svc = make_sqlite_service()
    assert svc.status()["inbox_missing"] is False
    shutil.rmtree(svc.settings.inbox)
    st = svc.status()
    assert st["inbox_missing"] is True and st["inbox_waiting"] == 0


def test_the_start_up_check_reads_only_the_days_since_the_newest_registered_scan(make_sqlite_service, shared_radar,
                                                                                caplog):
    """A database restored from an older backup lacks the newest scans: the daemon says so at start, without
    reading years of archive: it reads the newest scan's day on. A gap on an older day is `nowcast recover`'s
    to find (it reads everything)."""
    import logging

    from flows.daemon import _warn_unregistered

    svc = make_sqlite_service()
    hf.deliver(hf.event_files(shared_radar, n=6), svc.settings.inbox)
    assert len(svc.ingest().registered) == 6
    with svc.sessions() as s:
        times = sorted(s.scalars(FrameRecord.__table__.select().with_only_columns(FrameRecord.scan_time)))
        older_day = svc.settings.archive / "2001" / "01" / "01"  # a day before the newest scan's, never registered
        older_day.mkdir(parents=True)
        shutil.copy(next(svc.settings.archive.rglob("RDR_*.npz")), older_day / "RDR_200101010000.npz")
        s.execute(delete(FrameRecord).where(FrameRecord.scan_time.in_(times[1:2])))  # a gap on the newest day
        s.commit()
        gap = f"RDR_{times[1]:%Y%m%d%H%M}.npz"
        assert [p.name for p in archived_not_registered(s, svc.settings.archive, after_newest=True)] == [gap]
        assert [p.name for p in archived_not_registered(s, svc.settings.archive)] == ["RDR_200101010000.npz", gap]
        s.execute(delete(FrameRecord).where(FrameRecord.scan_time.in_(times[4:])))  # as a restored older backup
        s.commit()
        lost = [gap] + [f"RDR_{t:%Y%m%d%H%M}.npz" for t in times[4:]]
        assert [p.name for p in archived_not_registered(s, svc.settings.archive, after_newest=True)] == lost
    with caplog.at_level(logging.WARNING, logger="nowcast.daemon"):
        _warn_unregistered(svc)
    [record] = caplog.records
    assert record.getMessage() == (f"the archive holds 3 scans the database does not have ({lost[0]} .. "
                                   f"{lost[-1]}): run `nowcast recover` to register them again")
