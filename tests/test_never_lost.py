"""Nothing good is ever lost: files still arriving wait, the inbox entry goes only after its
archived copy is verified, a corrupt scan re-delivered whole is accepted, and whatever one
file does to the reader stops at that file.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import helpers_frames as hf
import pytest
from sqlalchemy import select

from nowcast_core.db.schema import FrameRecord, RejectedFile
from nowcast_core.inbox import ingest as ingest_module
from nowcast_core.io import files as durable
from nowcast_core.io import frame_file_name, scan_time_from_name


def _registered(svc) -> dict:
    with svc.sessions() as s:
        return {r.scan_time: r for r in s.scalars(select(FrameRecord))}


def _rejected(svc) -> list[RejectedFile]:
    with svc.sessions() as s:
        return list(s.scalars(select(RejectedFile).order_by(RejectedFile.id)))


def test_a_scan_written_in_two_parts_with_a_pause_is_archived_whole(make_service, shared_radar):
    svc = make_service()  # default grace: 10 minutes
    [src] = hf.event_files(shared_radar, 0, 1)
    whole = src.read_bytes()
    path = svc.settings.inbox / src.name
    with open(path, "wb") as fh:  # the producer writes half, then stalls
        fh.write(whole[:len(whole) // 2])
    first = svc.ingest()
    assert first.waiting == [src.name] and first.rejected == [] and first.registered == []
    assert path.read_bytes() == whole[:len(whole) // 2], "a file still arriving is left untouched"
    time.sleep(0.5)
    with open(path, "ab") as fh:  # ... and goes on into the same file
        fh.write(whole[len(whole) // 2:])
    second = svc.ingest()
    t = scan_time_from_name(src.name)
    assert second.registered == [t] and second.rejected == []
    assert _registered(svc)[t].archived_file(svc.settings.archive).read_bytes() == whole
    assert not path.exists() and _rejected(svc) == []


def test_a_short_grace_names_the_age_in_seconds(make_service, shared_radar):
    svc = make_service(incomplete_grace_s=1)
    [src] = hf.event_files(shared_radar, 0, 1)
    hf.write_file(svc.settings.inbox, src.name, src.read_bytes()[:300], age_s=14)
    [(_, kind, reason)] = svc.ingest().rejected
    assert kind == "corrupt" and re.search(r"\(unchanged for 1[45] s\)", reason), reason  # not "0 min"


def test_an_incomplete_file_is_quarantined_once_it_is_older_than_the_grace(make_service, shared_radar):
    svc = make_service(incomplete_grace_s=60)
    [src] = hf.event_files(shared_radar, 0, 1)
    young = hf.write_file(svc.settings.inbox, src.name, src.read_bytes()[:300], age_s=30)
    empty = hf.write_file(svc.settings.inbox, frame_file_name(hf.FAULT_DAY), b"", age_s=30)
    assert sorted(svc.ingest().waiting) == sorted([young.name, empty.name])
    for p in (young, empty):
        t = time.time() - 61
        os.utime(p, (t, t))
    report = svc.ingest()
    assert {f: k for f, k, _ in report.rejected} == {young.name: "corrupt", empty.name: "empty"}
    assert all("unchanged for 1 min" in reason for _, _, reason in report.rejected)
    # a file whose first bytes are not a zip's will never be one: not waited for either
    text = hf.write_file(svc.settings.inbox, frame_file_name(hf.FAULT_DAY + hf.minutes(2)), b"radar notes\n", age_s=0)
    [(name, kind, reason)] = svc.ingest().rejected
    assert (name, kind) == (text.name, "not_npz") and "is not a zip (.npz) archive (it starts with b'radar no')" in reason
    # a complete archive that breaks the contract is not waited for
    bad = hf.write_file(svc.settings.inbox, frame_file_name(hf.FAULT_DAY + hf.minutes(1)),
                        hf.npz_bytes(frame=hf.good_frame().astype("int16")), age_s=0)
    assert [(f, k) for f, k, _ in svc.ingest().rejected] == [(bad.name, "wrong_dtype")]


def test_a_corrupt_scan_redelivered_whole_is_accepted(make_service, shared_radar):
    svc = make_service()
    [src] = hf.event_files(shared_radar, 0, 1)
    hf.write_file(svc.settings.inbox, src.name, src.read_bytes()[:-40])  # truncated, and old
    assert [k for _, k, _ in svc.ingest().rejected] == ["corrupt"]
    hf.deliver([src], svc.settings.inbox)
    report = svc.ingest()
    t = scan_time_from_name(src.name)
    assert report.registered == [t] and report.rejected == []
    assert _registered(svc)[t].archived_file(svc.settings.archive).read_bytes() == src.read_bytes()
    [row] = _rejected(svc)
    assert Path(row.quarantine_path).read_bytes() == src.read_bytes()[:-40], "the corrupt copy is kept too"


def test_the_inbox_entry_stays_until_its_archived_copy_verifies(make_service, shared_radar, monkeypatch):
    svc = make_service()
    [src] = hf.event_files(shared_radar, 0, 1)
    hf.deliver([src], svc.settings.inbox)
    real_sha256 = durable.file_sha256
    monkeypatch.setattr(durable, "file_sha256", lambda path, **_kw: "0" * 64)  # the copy reads back wrong
    report = svc.ingest()
    assert report.registered == [] and [f for f, _ in report.failed] == [src.name]
    assert "reads back with checksum" in report.failed[0][1]
    assert (svc.settings.inbox / src.name).read_bytes() == src.read_bytes()
    assert _registered(svc) == {}
    assert not [p for p in svc.settings.archive.rglob("*") if p.is_file()], "a copy that does not verify is removed"
    monkeypatch.setattr(durable, "file_sha256", real_sha256)
    assert svc.ingest().registered == [scan_time_from_name(src.name)]
    assert list(svc.settings.inbox.iterdir()) == []


def test_an_archive_that_cannot_be_flushed_keeps_the_scan(make_service, shared_radar, monkeypatch):
    svc = make_service()
    [src] = hf.event_files(shared_radar, 0, 1)
    hf.deliver([src], svc.settings.inbox)

    def fsync_fails(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    report = svc.ingest()
    assert report.registered == [] and len(report.failed) == 1
    assert (svc.settings.inbox / src.name).exists() and _registered(svc) == {}
    assert not [p for p in svc.settings.archive.rglob("*") if p.is_file()], "no half-made copy is left behind"


def test_a_file_changed_after_it_was_read_is_not_removed(tmp_path):
    path = hf.write_file(tmp_path, "f", b"first")
    seen = os.lstat(path)
    hf.write_file(tmp_path, "f", b"second, longer")
    assert durable.unlink_if_unchanged(path, seen) is False and path.read_bytes() == b"second, longer"
    assert durable.unlink_if_unchanged(path, os.lstat(path)) is True and not path.exists()


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("bad magic"), NotImplementedError("method 99"),
                                   RecursionError()], ids=lambda e: type(e).__name__)
def test_any_exception_while_reading_quarantines_that_file_only(make_service, shared_radar, monkeypatch, error):
    svc = make_service()
    files = hf.event_files(shared_radar, 0, 4)
    hf.deliver(files, svc.settings.inbox)
    hostile = files[1].name
    real_read = ingest_module.read_scan

    def read(path, **kwargs):
        if Path(path).name == hostile:
            raise error
        return real_read(path, **kwargs)

    monkeypatch.setattr(ingest_module, "read_scan", read)
    report = svc.ingest()
    assert [(f, k) for f, k, _ in report.rejected] == [(hostile, "unreadable")]
    assert type(error).__name__ in report.rejected[0][2]
    assert len(report.registered) == 3 and report.failed == []
    assert svc.forecast().runs == 0  # the cycle goes on (three scans in a row are not yet a forecast)


def test_a_file_the_machine_cannot_read_stays_for_the_next_poll(make_service, shared_radar, monkeypatch):
    svc = make_service()
    [src] = hf.event_files(shared_radar, 0, 1)
    hf.deliver([src], svc.settings.inbox)
    real_read = ingest_module.read_scan

    def denied(path, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(ingest_module, "read_scan", denied)
    report = svc.ingest()
    assert report.rejected == [] and [f for f, _ in report.failed] == [src.name]
    assert (svc.settings.inbox / src.name).exists()
    monkeypatch.setattr(ingest_module, "read_scan", real_read)
    assert len(svc.ingest().registered) == 1
