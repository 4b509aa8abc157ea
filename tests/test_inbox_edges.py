"""The inbox's edges: links never followed, private quarantine, exact names, unsafe names,
ancient scan times, and entries that are no files at all. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path

import helpers_frames as hf
import pytest
from sqlalchemy import select

from nowcast_core.db.queries import frame_rows
from nowcast_core.db.schema import FrameRecord, RejectedFile
from nowcast_core.inbox.entries import MAX_NAME_BYTES
from nowcast_core.io import frame_file_name


def _frames(svc) -> list[datetime]:
    with svc.sessions() as s:
        return list(s.scalars(select(FrameRecord.scan_time).order_by(FrameRecord.scan_time)))


def _rejected(svc) -> list[RejectedFile]:
    with svc.sessions() as s:
        return list(s.scalars(select(RejectedFile).order_by(RejectedFile.id)))


def _fingerprint(path: Path) -> tuple:
    st = os.stat(path)
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size


# --- symbolic links ----------------------------------------------------------------------------


def test_links_are_never_followed_and_their_targets_never_touched(make_service, shared_radar, tmp_path):
    svc = make_service()
    inbox = svc.settings.inbox
    private = tmp_path / "outside" / "id_rsa"
    private.parent.mkdir()
    private.write_bytes(b"-----BEGIN PRIVATE KEY----- not for the radar feed\n")
    os.chmod(private, 0o600)
    [scan] = hf.event_files(shared_radar, 0, 1)
    targets = {"RDR_201008250000.npz": private, scan.name: scan, "notes.txt": private.parent,
               "RDR_201008250010.npz": tmp_path / "does-not-exist"}
    before = {p: _fingerprint(p) for p in (private, scan)}
    for name, target in targets.items():
        (inbox / name).symlink_to(target)
    [inside] = hf.deliver(hf.event_files(shared_radar, 1, 1), inbox)
    (inbox / "RDR_201008250020.npz").symlink_to(inbox / frame_file_name(inside))  # a link to a file in the inbox

    report = svc.ingest()

    assert report.registered == [inside], "only the real file is registered, never a link's target"
    assert sorted(f for f, _, _ in report.rejected) == sorted([*targets, "RDR_201008250020.npz"])
    assert {k for _, k, _ in report.rejected} == {"symlink"}
    assert {p: _fingerprint(p) for p in (private, scan)} == before
    assert list(inbox.iterdir()) == []
    for row in _rejected(svc):
        kept = Path(row.quarantine_path)
        assert kept.is_symlink(), "the link itself is kept, not a copy of its target"
        assert "symbolic link to" in row.reason and row.checksum is None
    # nothing in the quarantine holds the private file's bytes
    quarantined = [p for p in svc.settings.quarantine.rglob("*") if p.is_file() and not p.is_symlink()]
    assert all(p.read_bytes() != private.read_bytes() for p in quarantined)


# --- permissions -----------------------------------------------------------------------------


def test_quarantined_copies_are_private(make_service, tmp_path):
    svc = make_service()
    old_umask = os.umask(0o022)
    try:
        bad = hf.write_file(svc.settings.inbox, frame_file_name(hf.FAULT_DAY), b"not an archive")
        os.chmod(bad, 0o644)
        svc.ingest()
    finally:
        os.umask(old_umask)
    [row] = _rejected(svc)
    kept = Path(row.quarantine_path)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(svc.settings.quarantine.stat().st_mode) == 0o700
    assert kept.read_bytes() == b"not an archive"


# --- names ----------------------------------------------------------------------------------


NEAR_MISSES = ["RDR_201008260000.npz\n", "RDR_201008260000.npz.bak", "RDR_201008260000.npz~", " RDR_201008260000.npz",
               "RDR_201008260000.NPZ", "RDR_２０１００８２６００００.npz", "RDR_201008260000.npzX", "RDR_20100826000.npz",
               "RDR_201008260005.npz"]


def test_names_must_match_the_contract_exactly(make_service, shared_radar):
    svc = make_service()
    [good] = hf.event_files(shared_radar, 0, 1)
    for name in NEAR_MISSES:
        hf.write_file(svc.settings.inbox, name, good.read_bytes())
    report = svc.ingest()
    assert report.registered == [] and _frames(svc) == []
    assert {k for _, k, _ in report.rejected} == {"bad_name"}
    assert len(report.rejected) == len(NEAR_MISSES) and list(svc.settings.inbox.iterdir()) == []


def _write_raw_name(folder: Path, raw: bytes, data: bytes) -> None:
    fd = os.open(os.path.join(os.fsencode(folder), raw), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    t = os.stat(os.path.join(os.fsencode(folder), raw)).st_mtime - hf.OLD_AGE_S
    os.utime(os.path.join(os.fsencode(folder), raw), (t, t))


@pytest.mark.parametrize("raw", [b"RDR_\xff\xfe2010.npz", b"A" * 250 + b".npz", b"RDR_2010\n\x1b[31m.npz",
                                 "RDR_레이더_".encode() * 15 + b".npz"],
                         ids=["undecodable", "overlong", "control-characters", "long-utf8"])
def test_unsafe_names_are_quarantined_under_a_safe_name_and_recorded(make_service, shared_radar, raw):
    svc = make_service()
    [good] = hf.event_files(shared_radar, 0, 1)
    _write_raw_name(svc.settings.inbox, raw, b"whatever it holds")
    hf.deliver([good], svc.settings.inbox)

    report = svc.ingest()

    assert report.registered == [datetime(2010, 8, 26, tzinfo=UTC)] and report.failed == []
    [row] = _rejected(svc)
    assert row.reason_kind == "bad_name"
    assert ascii(raw) in row.reason, "the original name's bytes are kept in the reason"
    kept = Path(row.quarantine_path)
    assert kept.name == row.file_name and kept.name.startswith("unsafe-name-") and kept.name.isascii()
    assert kept.read_bytes() == b"whatever it holds"
    assert list(svc.settings.inbox.iterdir()) == []
    with svc.sessions() as s:
        [listed] = frame_rows(s, rejected=True)
    assert listed["file"] == row.file_name and ascii(raw) in listed["reason"]
    # a second file of the same name (re-delivered) is kept beside the first
    _write_raw_name(svc.settings.inbox, raw, b"again")
    svc.ingest()
    assert len({r.quarantine_path for r in _rejected(svc)}) == 2


def test_longest_names_a_file_system_allows_are_handled(make_service):
    svc = make_service()
    name = "R" * 251 + ".npz"  # 255 bytes: NAME_MAX; a suffix for a unique or temporary name would overflow it
    assert len(name) > MAX_NAME_BYTES
    for _ in range(2):  # delivered twice: the second copy is kept beside the first
        hf.write_file(svc.settings.inbox, name, b"x")
        report = svc.ingest()
        assert report.failed == [] and [k for _, k, _ in report.rejected] == ["bad_name"]
    assert len({r.quarantine_path for r in _rejected(svc)}) == 2 and list(svc.settings.inbox.iterdir()) == []


# --- scan times --------------------------------------------------------------------------------


def test_scan_times_before_the_earliest_date_are_rejected(make_service, shared_radar):
    svc = make_service()
    frame = hf.good_frame()
    ancient = hf.write_scan(svc.settings.inbox, datetime(1900, 1, 1, tzinfo=UTC), frame)
    edge = hf.write_scan(svc.settings.inbox, datetime(1999, 12, 31, 23, 50, tzinfo=UTC), frame)
    report = svc.ingest()
    assert {f: k for f, k, _ in report.rejected} == {ancient.name: "before_earliest", edge.name: "before_earliest"}
    assert _frames(svc) == []

    later = make_service(home=svc.settings.home.parent / "home2", earliest_scan_time=datetime(2011, 1, 1, tzinfo=UTC))
    hf.deliver(hf.event_files(shared_radar, 0, 1), later.settings.inbox)
    assert [k for _, k, _ in later.ingest().rejected] == ["before_earliest"]


# --- entries that are no files ---------------------------------------------------------------------


def test_directories_fifos_and_sockets_are_reported_not_read_and_never_block(make_service, shared_radar, caplog,
                                                                            monkeypatch):
    svc = make_service()
    inbox = svc.settings.inbox
    (inbox / "subdir").mkdir()
    (inbox / "RDR_201008260010.npz").mkdir()  # a directory with a scan's name
    (inbox / ".hidden-dir").mkdir()
    os.mkfifo(inbox / "RDR_201008260020.npz")
    sock = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(inbox)  # a socket's path must be short
    sock.bind("feed.sock")
    times = hf.deliver(hf.event_files(shared_radar, 0, 1), inbox)

    with caplog.at_level(logging.WARNING, logger="nowcast_core.inbox.entries"):
        report = svc.ingest()
        again = svc.ingest()
    sock.close()

    assert report.registered == times and report.rejected == [] and report.failed == []
    expected = ["RDR_201008260010.npz (directory)", "RDR_201008260020.npz (fifo)", "feed.sock (socket)",
                "subdir (directory)", ".hidden-dir (directory)"]
    assert sorted(report.unexpected) == sorted(expected) == sorted(again.unexpected)
    warned = [r.getMessage() for r in caplog.records if "left there and not read" in r.getMessage()]
    assert len(warned) == len(expected), "each is logged once, not at every poll"
    status = svc.status()
    assert status["inbox_unexpected"] == len(expected)
    assert sorted(status["inbox_unexpected_names"]) == sorted(expected)
    assert sorted(p.name for p in inbox.iterdir()) == sorted(n.split(" (")[0] for n in expected)
    assert _rejected(svc) == []


# --- producers' temporary names ----------------------------------------------------------------------


def test_temporary_names_wait_for_their_rename(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 3)
    temporary = [f"{files[0].name}.part", f"{files[1].name}.tmp", f".{files[2].name}", "upload.TMP"]
    sources = [files[0], files[1], files[2], files[0]]
    for name, src in zip(temporary, sources, strict=True):
        hf.write_file(inbox, name, src.read_bytes()[:50])  # partial, and old: still never quarantined
    report = svc.ingest()
    assert sorted(report.temporary) == sorted(temporary)
    assert (report.registered, report.rejected, report.failed) == ([], [], [])
    assert svc.status()["inbox_in_transfer"] == 4 and svc.status()["inbox_waiting"] == 0
    # the producer finishes and renames: registered
    for name, src in zip(temporary[:3], sources[:3], strict=True):
        (inbox / name).write_bytes(src.read_bytes())
        os.replace(inbox / name, inbox / src.name)
    assert len(svc.ingest().registered) == 3
