"""Free disk space of the state folders: status, the daemon's warning, and what waits in the inbox."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nowcast_core.cycle.service import DISK_WARNING_EVERY
from nowcast_core.io.files import disk_space

#: More than any disk has: the limit is always crossed, on the real disk, without a fake.
ALWAYS_LOW_GB = 1e9


def test_folders_on_one_disk_are_one_entry_and_a_missing_folder_counts_on_its_parent(tmp_path):
    (tmp_path / "a").mkdir()
    spaces = disk_space({"a": tmp_path / "a", "deeper": tmp_path / "not-yet" / "deeper"})
    assert len(spaces) == 1
    only = spaces[0]
    assert only.folders == ("a", "deeper")
    usage = os.statvfs(tmp_path)
    assert 0 < only.free_bytes <= only.total_bytes <= usage.f_blocks * usage.f_frsize


def test_two_disks_come_fullest_first(tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        import pytest

        pytest.skip("no second file system here")
    spaces = disk_space({"tmp": tmp_path, "shm": Path(shm)})
    assert len(spaces) == 2 and spaces[0].free_bytes <= spaces[1].free_bytes


def test_status_names_the_disk_and_whether_it_is_low(make_sqlite_service):
    default = make_sqlite_service().status()  # 5 GB: low or not, as this machine's disk is
    assert default["disk_free_gb"] > 0 and default["disk_low"] is (default["disk_free_gb"] < 5)
    assert set(default["disk_free_folders"]) == {"home", "inbox", "archive", "quarantine", "forecasts"}
    low = make_sqlite_service(min_free_disk_gb=ALWAYS_LOW_GB).status()
    assert low["disk_low"] is True and abs(low["disk_free_gb"] - default["disk_free_gb"]) < 1
    assert make_sqlite_service(min_free_disk_gb=0).status()["disk_low"] is False  # 0: never


def test_the_daemons_warning_comes_when_the_disk_goes_low_then_hourly(make_sqlite_service):
    svc = make_sqlite_service(min_free_disk_gb=ALWAYS_LOW_GB)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = svc.disk_warning(t0)
    assert first.startswith("low disk space: ") and "home, inbox, archive, quarantine, forecasts" in first
    assert "NOWCAST_MIN_FREE_DISK_GB" in first and "free or add space" in first
    assert svc.disk_warning(t0 + DISK_WARNING_EVERY - timedelta(seconds=1)) is None
    assert svc.disk_warning(t0 + DISK_WARNING_EVERY) is not None
    svc.settings.min_free_disk_gb = 0  # space freed: no warning, and the next low warns at once
    assert svc.disk_warning(t0 + 2 * DISK_WARNING_EVERY) is None
    svc.settings.min_free_disk_gb = ALWAYS_LOW_GB
    assert svc.disk_warning(t0 + 2 * DISK_WARNING_EVERY + timedelta(seconds=1)) is not None


def test_status_names_what_waits_in_the_inbox_with_its_age(make_sqlite_service):
    svc = make_sqlite_service()
    old = svc.settings.inbox / "RDR_202001010000.npz"
    old.write_bytes(b"PK\x03\x04 not all of it yet")
    ten_min_ago = time.time() - 600
    os.utime(old, (ten_min_ago, ten_min_ago))
    (svc.settings.inbox / "RDR_202001010010.npz").write_bytes(b"PK\x03\x04")
    st = svc.status()
    assert st["inbox_waiting"] == 2
    assert st["inbox_waiting_names"][0] == "RDR_202001010000.npz (modified 10 min ago)"  # the oldest first
    assert st["inbox_waiting_names"][1].startswith("RDR_202001010010.npz (modified ")
    assert st["inbox_waiting_names"][1].endswith(" s ago)")


def test_a_free_space_reading_that_fails_does_not_fail_the_cycle(make_sqlite_service, monkeypatch):
    svc = make_sqlite_service(min_free_disk_gb=ALWAYS_LOW_GB)

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("nowcast_core.cycle.service.disk_space", unreadable)
    assert svc.disk_warning() is None
    monkeypatch.undo()
    assert svc.disk_warning() is not None
