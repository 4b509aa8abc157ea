"""The daemon keeps its promises when things break (issue: production, fault tests)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from flows.daemon import stop_daemon
from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service
from nowcast_core.db.schema import (
    DamRainfall,
    EnsembleRun,
    ForecastRun,
    FrameRecord,
    RejectedFile,
)
from nowcast_core.io import frame_file_name
from nowcast_core.io.fields import load_field
from nowcast_core.io.sample import write_sequence

NOWCAST = [sys.executable, "-m", "nowcast_app.cli"]


def _env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    env.update(NOWCAST_HOME=str(home), NOWCAST_SETTLE_SECONDS="0", NOWCAST_METHOD="persistence",
               NOWCAST_BASELINES='["pysteps"]', **extra)
    return env


def _processes_of(home: Path) -> list[int]:
    """Live processes started for ``home`` (their environment names it), from /proc."""
    mark = f"NOWCAST_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                if (entry / "stat").read_text().split(") ")[-1][0] != "Z":  # not a zombie
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _assert_runs_whole(db: Path, forecasts: Path) -> None:
    """Every stored run has its 42 results and a field file that matches its checksum."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT r.id, r.field_path, r.field_checksum, COUNT(d.id) FROM forecast_runs r "
                           "LEFT JOIN dam_rainfall d ON d.run_id = r.id GROUP BY r.id").fetchall()
        dupes = con.execute("SELECT issue_time, method, COUNT(*) FROM forecast_runs "
                            "GROUP BY issue_time, method HAVING COUNT(*) > 1").fetchall()
    finally:
        con.close()
    assert dupes == []
    for _run_id, path, checksum, n_results in rows:
        assert n_results == 42
        assert load_field(forecasts, path, checksum).shape == (6, 120, 120)


@pytest.mark.slow
def test_kill_9_mid_cycle_then_restart(tmp_path, shared_radar):
    home = tmp_path / "home"
    env = _env(home)
    scans = sorted((shared_radar / "bom-w0").glob("RDR_*.npz"))[:40]  # 37 issue times: killed after 5
    (home / "inbox").mkdir(parents=True)
    for p in scans:
        shutil.copy(p, home / "inbox" / p.name)
    proc = subprocess.Popen([*NOWCAST, "run", "--once"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = home / "nowcast.db"
    deadline = time.monotonic() + 180
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            con = sqlite3.connect(db, timeout=1)
            stored = con.execute("SELECT COUNT(*) FROM forecast_runs").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if stored >= 5:
            break
    assert proc.poll() is None, "the cycle finished before it could be killed: give it more work"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= stored
    deadline = time.monotonic() + 10  # Prefect's temporary server (a session of its own) ends with it
    while _processes_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_of(home), "left behind after kill -9"

    done = subprocess.run([*NOWCAST, "run", "--once"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    con = sqlite3.connect(db)
    n_frames = con.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
    production = con.execute("SELECT COUNT(*) FROM forecast_runs WHERE is_production").fetchone()[0]
    con.close()
    assert n_frames == len(scans)  # no scan lost
    assert not list((home / "inbox").glob("RDR_*"))
    assert production == len(scans) - 3  # every issue time exactly once
    _assert_runs_whole(db, home / "forecasts")


@pytest.mark.slow
def test_two_daemons_on_one_home(tmp_path):
    home = tmp_path / "home"
    env = _env(home, NOWCAST_POLL_INTERVAL_S="5")
    first = subprocess.Popen([*NOWCAST, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (home / "daemon.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        second = subprocess.run([*NOWCAST, "run"], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert "another daemon is running" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert first.poll() is None  # the first one goes on
    finally:
        stop_daemon(first)
    assert first.returncode == 0  # SIGTERM stops it cleanly


def _sample_service(tmp_path, database_url=None, **overrides) -> Service:
    settings = load_settings(home=tmp_path / "home", database_url=database_url, settle_seconds=0,
                             method="persistence", baselines=[], **overrides)
    svc = Service(settings)
    svc.migrate()
    return svc


@pytest.mark.postgres
def test_database_outage_then_catch_up(tmp_path, postgres_server):
    url = postgres_server.url(postgres_server.create_database())
    svc = _sample_service(tmp_path, url)
    paths = write_sequence(tmp_path / "scans", n_scans=10, seed=3)
    for p in paths[:5]:
        shutil.copy(p, svc.settings.inbox / p.name)
    svc.ingest()
    svc.forecast()
    postgres_server.pause()
    try:
        for p in paths[5:]:
            shutil.copy(p, svc.settings.inbox / p.name)
        for _ in range(2):  # cycles during the outage fail, and lose nothing
            with pytest.raises(OperationalError):
                svc.ingest()
            with pytest.raises(OperationalError):
                svc.forecast()
        assert len(list(svc.settings.inbox.glob("RDR_*.npz"))) == 5
    finally:
        postgres_server.resume()
    report = svc.ingest()
    assert len(report.registered) == 5
    svc.forecast()
    with svc.sessions() as session:
        assert session.scalar(select(func.count(FrameRecord.id))) == 10
        assert session.scalar(select(func.count(ForecastRun.id))) == 7
    svc.close()


def test_daemon_tick_survives_a_failing_cycle(tmp_path, monkeypatch, caplog):
    """A cycle that raises (database down) is logged in one line, and the next tick runs again."""
    import logging

    import flows.daemon as daemon

    calls = []

    def failing():
        calls.append(1)
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    # The same wrapper the scheduler calls: exceptions must not escape it.
    now = [0.0]
    tick = daemon._guarded(failing, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="nowcast.daemon"):
        tick()
        for _ in range(3):  # the same failure again, within the repeat interval: counted, not logged
            now[0] += 5
            tick()
        now[0] += daemon.REPEAT_LOG_S
        tick()
    assert len(calls) == 5
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info is None for r in errors)  # no traceback for an outage
    assert errors[0].getMessage() == "forecast cycle failed: connection refused; the next one retries"
    assert errors[1].getMessage().endswith("(and 3 more times since it was last logged)")
    calls_ok = daemon._guarded(lambda: None)
    calls_ok()  # no failure before: nothing to say
    flaky = iter([True, False])

    def once_failing():
        if next(flaky):
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    tick = daemon._guarded(once_failing)
    with caplog.at_level(logging.INFO, logger="nowcast.daemon"):
        tick()
        tick()
    assert caplog.records[-1].getMessage() == "forecast cycle works again after 1 failed attempt"


def test_archive_write_failure_keeps_scan_in_inbox(tmp_path, monkeypatch):
    import errno

    import nowcast_core.inbox.ingest as ingest

    svc = _sample_service(tmp_path)
    paths = write_sequence(tmp_path / "scans", n_scans=4, seed=1)
    for p in paths:
        shutil.copy(p, svc.settings.inbox / p.name)

    def disk_full(src, dest):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(ingest, "_copy_durably", disk_full)
    report = svc.ingest()
    assert len(report.failed) == 4 and not report.registered
    assert len(list(svc.settings.inbox.glob("RDR_*.npz"))) == 4
    monkeypatch.undo()
    assert len(svc.ingest().registered) == 4
    svc.close()


def test_a_forecast_that_cannot_be_written_is_redone_at_the_next_cycle(tmp_path, monkeypatch):
    import errno

    import nowcast_core.cycle.steps as steps

    svc = _sample_service(tmp_path, ensembles=False)
    for p in write_sequence(tmp_path / "scans", n_scans=6, seed=2):
        shutil.copy(p, svc.settings.inbox / p.name)
    assert len(svc.ingest().registered) == 6

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(steps, "save_field", disk_full)
    with pytest.raises(OSError, match="No space left"):
        svc.forecast()
    with svc.sessions() as session:
        assert session.scalar(select(func.count(ForecastRun.id))) == 0  # nothing half stored
    monkeypatch.undo()
    assert svc.forecast().runs == 3  # issue times with three scans before them
    with svc.sessions() as session:
        runs = list(session.scalars(select(ForecastRun)))
        assert len(runs) == 3 and all(load_field(svc.settings.forecasts, r.field_path, r.field_checksum).shape == (6, 120, 120)
                                      for r in runs)
    svc.close()


def test_500_scans_after_downtime_in_order_with_bounded_memory(tmp_path):
    svc = _sample_service(tmp_path, max_scan_age_h=100)  # 500 scans span 83 hours
    for p in write_sequence(tmp_path / "scans", n_scans=500, seed=7):
        shutil.copy(p, svc.settings.inbox / p.name)
    report = svc.ingest()
    assert len(report.registered) == 500
    tracemalloc.start()
    summary = svc.forecast()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert summary.runs == 497
    # chunks of 16 issue times: inputs and outputs of one chunk plus a bounded scan cache, and one
    # ensemble at a time (its pooled 12-member STEPS: pysteps' cascades), at most 12 of them per cycle
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"
    with svc.sessions() as session:
        runs = list(session.execute(select(ForecastRun.id, ForecastRun.issue_time).order_by(ForecastRun.id)))
        assert [t for _, t in runs] == sorted(t for _, t in runs)  # oldest first
        assert session.scalar(select(func.count(DamRainfall.id))) == 497 * 42
        ensembles = list(session.scalars(select(EnsembleRun.issue_time).where(EnsembleRun.is_production)))
        assert sorted(ensembles) == [t for _, t in runs][-12:]  # the newest 12; older ones in later cycles
    svc.close()


def _write_frame(folder: Path, scan_time: datetime, value: int = 150) -> Path:
    path = folder / frame_file_name(scan_time)
    np.savez(path, frame=np.full((120, 120), value, np.uint8))
    return path


def test_future_scans_and_clock_jumps(tmp_path):
    svc = _sample_service(tmp_path)
    inbox = svc.settings.inbox
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    for k in range(4):
        _write_frame(inbox, now - timedelta(minutes=10 * (3 - k)))
    _write_frame(inbox, now + timedelta(hours=5))  # from the future
    report = svc.ingest(now=now)
    assert len(report.registered) == 4
    assert [kind for _, kind, _ in report.rejected] == ["future"]

    # the clock jumps back three hours: the feed goes on and is accepted, not called "future"
    jumped_back = now - timedelta(hours=3)
    _write_frame(inbox, now + timedelta(minutes=10))
    report = svc.ingest(now=jumped_back)
    assert report.registered == [now + timedelta(minutes=10)] and not report.rejected

    # the clock jumps forward a day: nothing is skipped, since scan age is measured from the data
    _write_frame(inbox, now + timedelta(minutes=20))
    assert len(svc.ingest(now=now + timedelta(days=1)).registered) == 1
    summary = svc.forecast()
    assert summary.runs == 3 and summary.too_old == 0
    with svc.sessions() as session:
        assert session.scalar(select(RejectedFile.reason_kind)) == "future"
    svc.close()
