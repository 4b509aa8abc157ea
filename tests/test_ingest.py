"""The inbox: good scans archived and registered, bad files quarantined with their reason,
nothing ever deleted. Every test runs on SQLite and on a real PostgreSQL (``db_url``).
"""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta
from pathlib import Path

import helpers_frames as hf
import numpy as np
import pytest
from sqlalchemy import func, select

from nowcast_core.db.queries import frame_rows
from nowcast_core.db.schema import FrameRecord, RejectedFile
from nowcast_core.inbox import ingest as ingest_module
from nowcast_core.io import frame_file_name, scan_time_from_name


def _frames(svc) -> dict[datetime, FrameRecord]:
    with svc.sessions() as s:
        return {r.scan_time: r for r in s.scalars(select(FrameRecord))}


def _rejected(svc) -> list[RejectedFile]:
    with svc.sessions() as s:
        return list(s.scalars(select(RejectedFile).order_by(RejectedFile.id)))


def _state_folders(svc) -> list[Path]:
    s = svc.settings
    return [s.inbox, s.archive, s.quarantine, s.home / "duplicates"]


def test_good_scans_registered_bad_files_quarantined_nothing_deleted(make_service, shared_radar, tmp_path):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 6)
    times = hf.deliver(files, inbox)
    # a good synthetic scan with a nodata mask, written with plain np.savez
    nodata = np.zeros(hf.GRID, bool)
    nodata[:30] = True
    t_nd = hf.EVENT_START + hf.minutes(20)
    hf.write_scan(inbox, t_nd, hf.good_frame(5), nodata, compressed=False)
    marker = tmp_path / "unpickled"
    faults = hf.write_faults(inbox, marker)
    originals = {p.name: p.read_bytes() for p in inbox.iterdir()}
    n_files = len(originals)

    report = svc.ingest()

    good = sorted(times + [t_nd])
    assert sorted(report.registered) == good
    assert sorted(f for f, _, _ in report.rejected) == sorted(faults)
    assert report.failed == [] and report.waiting == [] and report.duplicates == []
    assert not marker.exists(), "ingest unpickled a file's objects"

    # every good scan: archived under its date, bytes unchanged, checksum in the DB
    frames = _frames(svc)
    assert sorted(frames) == good
    for t, record in frames.items():
        name = frame_file_name(t)
        assert record.archive_path == f"{t:%Y/%m/%d}/{name}"  # relative to the archive: the home can move
        archived = record.archived_file(svc.settings.archive)
        assert archived.read_bytes() == originals[name]
        assert record.checksum == hf.sha256(originals[name])
    assert frames[t_nd].nodata_fraction == pytest.approx(0.25)
    assert 0.0 <= frames[times[-1]].wet_fraction <= 1.0

    # every bad file: in quarantine, unchanged, with its own reason row
    rows = _rejected(svc)
    assert {r.file_name: r.reason_kind for r in rows} == {name: kind for name, (kind, _) in faults.items()}
    for r in rows:
        q = Path(r.quarantine_path)
        assert q.is_file() and q.is_relative_to(svc.settings.quarantine) and q.name == r.file_name
        assert q.read_bytes() == faults[r.file_name][1]
        assert r.reason.startswith(r.reason_kind) and len(r.reason) > len(r.reason_kind) + 5
    with svc.sessions() as s:
        listed = frame_rows(s, rejected=True)
        registered = frame_rows(s)
    assert {(x["file"], x["reason_kind"]) for x in listed} == {(n, k) for n, (k, _) in faults.items()}
    assert all(x["reason"] and x["quarantine_path"] and x["rejected_at"] for x in listed)
    assert [x["scan_time"] for x in registered] == [t.isoformat().replace("+00:00", "Z") for t in good]
    with svc.sessions() as s:
        shown = frame_rows(s, archive=svc.settings.archive)
    assert [x["archive_path"] for x in shown] == [str(svc.settings.archive / f"{t:%Y/%m/%d}" / frame_file_name(t))
                                                  for t in good]

    # the inbox is empty and no file was lost
    assert list(inbox.iterdir()) == []
    assert hf.count_files(*_state_folders(svc)) == n_files

    # polling again changes nothing
    again = svc.ingest()
    assert (again.registered, again.rejected, again.duplicates) == ([], [], [])
    assert len(_frames(svc)) == len(good) and len(_rejected(svc)) == len(faults)


def test_identical_duplicate_dropped_different_one_quarantined(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    [f0, f1] = hf.event_files(shared_radar, 10, 2)
    [t0] = hf.deliver([f0], inbox)
    assert svc.ingest().registered == [t0]
    record = _frames(svc)[t0]

    # the same file again: dropped into home/duplicates, no new row
    hf.deliver([f0], inbox)
    report = svc.ingest()
    assert report.duplicates == [f0.name] and report.registered == [] and report.rejected == []
    dup = hf.all_files(svc.settings.home / "duplicates")
    assert [p.name for p in dup] == [f0.name] and dup[0].read_bytes() == f0.read_bytes()
    assert len(_frames(svc)) == 1 and _rejected(svc) == []

    # a different (valid) file for the registered scan: conflicting_duplicate, the registered one stays
    other = hf.write_file(inbox, f0.name, f1.read_bytes())
    report = svc.ingest()
    assert [(f, k) for f, k, _ in report.rejected] == [(f0.name, "conflicting_duplicate")]
    [row] = _rejected(svc)
    assert row.reason_kind == "conflicting_duplicate" and row.file_name == f0.name
    assert row.checksum == hf.sha256(f1.read_bytes())
    assert Path(row.quarantine_path).read_bytes() == f1.read_bytes()
    after = _frames(svc)[t0]
    assert (after.id, after.checksum, after.archive_path) == (record.id, record.checksum, record.archive_path)
    assert after.archived_file(svc.settings.archive).read_bytes() == f0.read_bytes()
    assert not other.exists()
    # a third copy of the same scan name is kept too (unique quarantine name), still nothing deleted
    hf.write_file(inbox, f0.name, f1.read_bytes())
    svc.ingest()
    assert len(_rejected(svc)) == 2
    assert len({r.quarantine_path for r in _rejected(svc)}) == 2
    assert hf.count_files(*_state_folders(svc)) == 4


def test_archive_write_failure_leaves_scan_in_inbox(make_service, shared_radar, monkeypatch):
    """A full disk / read-only archive (simulated: chmod does not stop root) registers nothing."""
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 3)
    hf.deliver(files, inbox)

    def no_space(data, dest):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(ingest_module, "_copy_durably", no_space)
    report = svc.ingest()
    assert report.registered == [] and report.rejected == []
    assert sorted(f for f, _ in report.failed) == [f.name for f in files]
    assert all("No space left" in e for _, e in report.failed)
    assert sorted(p.name for p in inbox.iterdir()) == [f.name for f in files]
    assert all((inbox / f.name).read_bytes() == f.read_bytes() for f in files)
    assert _frames(svc) == {} and _rejected(svc) == []
    assert hf.all_files(svc.settings.archive) == []

    # the disk has room again: the next poll takes them
    monkeypatch.undo()
    report = svc.ingest()
    assert sorted(report.registered) == [scan_time_from_name(f.name) for f in files]
    assert list(inbox.iterdir()) == []
    assert len(hf.all_files(svc.settings.archive)) == 3


def test_hidden_temp_files_are_left_alone(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    [f0] = hf.event_files(shared_radar, 0, 1)
    part = hf.write_file(inbox, f".{f0.name}.part", f0.read_bytes()[:100])
    tmp = hf.write_file(inbox, f".{f0.name}.4242.tmp", b"")
    report = svc.ingest()
    assert (report.registered, report.rejected, report.waiting, report.failed) == ([], [], [], [])
    assert part.read_bytes() == f0.read_bytes()[:100] and tmp.exists()
    assert _frames(svc) == {} and _rejected(svc) == []
    assert svc.status()["inbox_waiting"] == 0


def test_fresh_files_wait_for_the_next_poll(make_service, shared_radar):
    svc = make_service(settle_seconds=30)
    inbox = svc.settings.inbox
    [f0] = hf.event_files(shared_radar, 0, 1)
    fresh = hf.write_file(inbox, f0.name, f0.read_bytes(), age_s=0)
    empty = hf.write_file(inbox, frame_file_name(hf.FAULT_DAY), b"", age_s=0)
    report = svc.ingest()
    assert sorted(report.waiting) == sorted([fresh.name, empty.name])
    assert report.registered == [] and report.rejected == []
    assert fresh.exists() and empty.exists() and _frames(svc) == {} and _rejected(svc) == []

    # a moment later (mtimes moved back) they are judged: one good scan, one empty file
    for p in (fresh, empty):
        hf.write_file(inbox, p.name, p.read_bytes())
    report = svc.ingest()
    assert report.registered == [scan_time_from_name(f0.name)]
    assert [(f, k) for f, k, _ in report.rejected] == [(empty.name, "empty")]


def test_future_is_judged_against_now_or_newest_scan_with_tolerance(make_service):
    svc = make_service(future_tolerance_min=15)
    inbox = svc.settings.inbox
    t = lambda h, m: datetime(2024, 5, 1, h, m, tzinfo=UTC)  # noqa: E731
    now = t(12, 3)
    hf.write_scan(inbox, t(12, 10), hf.good_frame())          # 7 min ahead: within tolerance
    far = hf.write_scan(inbox, t(12, 30), hf.good_frame(1))   # 20 min after the newest scan, 27 after now
    report = svc.ingest(now=now)
    assert report.registered == [t(12, 10)]
    assert [(f, k) for f, k, _ in report.rejected] == [(far.name, "future")]
    assert list(inbox.iterdir()) == []
    # the wall clock jumps back an hour: the feed that goes on is judged against its newest scan
    hf.write_scan(inbox, t(12, 20), hf.good_frame(2))
    bad = hf.write_scan(inbox, t(12, 40), hf.good_frame(3))
    report = svc.ingest(now=now - timedelta(hours=1))
    assert report.registered == [t(12, 20)]
    assert [(f, k) for f, k, _ in report.rejected] == [(bad.name, "future")]


def test_undecodable_archives_are_quarantined_and_the_poll_goes_on(make_service, shared_radar):
    """Files that make numpy raise something other than ValueError/OSError (a damaged deflate
    stream: zlib.error; a bare .npy: TypeError) must be quarantined as corrupt, and must not
    stop the poll: the good scan after them in the same poll is registered."""
    svc = make_service()
    inbox = svc.settings.inbox
    bad = {
        frame_file_name(hf.FAULT_DAY): hf.damaged_compressed_archive(),
        frame_file_name(hf.FAULT_DAY + hf.minutes(1)): hf.npy_bytes(hf.good_frame()),
    }
    for name, data in bad.items():
        hf.write_file(inbox, name, data)
    [t0] = hf.deliver(hf.event_files(shared_radar, 0, 1), inbox)  # sorts after the bad ones

    report = svc.ingest()

    assert report.registered == [t0]
    assert {r.file_name: r.reason_kind for r in _rejected(svc)} == dict(zip(bad, ["corrupt", "not_npz"]))
    assert list(inbox.iterdir()) == []
    assert hf.count_files(*_state_folders(svc)) == 3


def test_ingest_inbox_directly(db_url, tmp_path, shared_radar):
    """``ingest_inbox`` is usable without a Service (what the flows' task wraps)."""
    from nowcast_core.db import make_engine, session_factory, upgrade

    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        inbox = tmp_path / "inbox"
        times = hf.deliver(hf.event_files(shared_radar, 0, 2), inbox)
        hf.write_file(inbox, "notes.txt", b"x")
        report = ingest_module.ingest_inbox(session_factory(engine), inbox=inbox, home=tmp_path, archive=tmp_path / "a",
                                            quarantine=tmp_path / "q", settle_seconds=0)
        assert report.registered == times
        assert [(f, k) for f, k, _ in report.rejected] == [("notes.txt", "bad_name")]
        assert "2 registered" in report.summary() and "1 quarantined" in report.summary()
        with session_factory(engine)() as s:
            assert s.scalar(select(func.count(FrameRecord.id))) == 2
    finally:
        engine.dispose()
