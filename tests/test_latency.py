"""Latency as a user sees it: `nowcast run` on a 60 s sweep stores a scan's forecast seconds after
its arrival, and `nowcast forecasts` / `nowcast frames` show `stored_at` / `arrived_at`; a backlog
forecast in batches stores the same runs as one issue time at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import helpers_frames as hf
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows.daemon import stop_daemon
from nowcast_app.cli import app
from nowcast_core.db.queries import forecast_rows
from nowcast_core.db.schema import ForecastRun


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _cli_json(env: dict, *args: str) -> list[dict]:
    result = CliRunner().invoke(app, [*args, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_nowcast_run_stores_a_moved_in_scan_within_seconds_and_shows_when(tmp_path, shared_radar):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    # Defaults (60 s sweep, 2 s settle time, the watcher on) but persistence, to keep the test short.
    env.update(NOWCAST_HOME=str(home), NOWCAST_METHOD="persistence", NOWCAST_BASELINES="[]")
    files = hf.event_files(shared_radar, 0, 4)
    hf.deliver(files[:3], home / "inbox")
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "nowcast_app.cli", "run"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "3 scans registered" not in log_path.read_text():  # the start sweep
            assert daemon.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        staged = tmp_path / files[3].name
        staged.write_bytes(files[3].read_bytes())  # just written: the sweep would let it settle
        moved = time.time()
        os.rename(staged, home / "inbox" / files[3].name)
        while "1 scan registered" not in log_path.read_text():
            assert daemon.poll() is None and time.time() - moved < 10.0, "not forecast within 10 s (sweep: 60 s)"
            time.sleep(0.1)
    finally:
        assert stop_daemon(daemon, 60) == 0
    env_cli = {"NOWCAST_HOME": str(home)}
    frames = {f["scan_time"]: f for f in _cli_json(env_cli, "frames")}
    rows = _cli_json(env_cli, "forecasts")
    assert {r["issue_time"] for r in rows} == {"2010-08-26T00:30:00Z"} and len(rows) == 42
    stored_at = {_utc(r["stored_at"]) for r in rows}
    assert len(stored_at) == 1  # one run, one commit
    arrived_at = _utc(frames["2010-08-26T00:30:00Z"]["arrived_at"])
    assert abs(arrived_at.timestamp() - moved) < 1.0
    latency = (stored_at.pop() - arrived_at).total_seconds()
    assert 0 < latency < 10.0
    assert "." in rows[0]["stored_at"] and rows[0]["stored_at"].endswith("Z")  # UTC, sub-second
    csv = CliRunner().invoke(app, ["forecasts", "--format", "csv"], env=env_cli).stdout
    assert "stored_at" in csv.splitlines()[0]
    info = [line for line in log_path.read_text().splitlines() if " INFO " in line and "cycle:" in line]
    assert len(info) == 2, info  # one line per cycle that did something, nothing for idle event cycles


@pytest.mark.parametrize("method", ["pysteps", "rainnet"])
def test_a_backlog_forecast_in_batches_stores_the_runs_of_one_at_a_time(tmp_path, shared_radar, sqlite_url, method):
    from nowcast_core.config import load_settings
    from nowcast_core.cycle.service import Service
    from nowcast_core.models.production import ProductionForecaster

    files = hf.event_files(shared_radar, 10, 9)  # 6 issue times: a batch of 4 and one of 2
    stored = {}
    loaded = ProductionForecaster()  # one model load for both installations
    for batch in (1, 4):
        home = tmp_path / f"batch-{batch}"
        svc = Service(load_settings(home=home, database_url=f"sqlite:///{home / 'db.sqlite'}", method=method,
                                    baselines=[]), production=loaded)
        svc.migrate()
        svc.batch_issue_times = batch
        hf.deliver(files, svc.settings.inbox)
        svc.ingest()
        assert svc.forecast().runs == 6
        with svc.sessions() as s:
            rows = forecast_rows(s, since=datetime(2010, 1, 1, tzinfo=UTC))
            checksums = list(s.scalars(select(ForecastRun.field_checksum).order_by(ForecastRun.issue_time)))
        svc.close()
        stored[batch] = ([{k: v for k, v in r.items() if k != "stored_at"} for r in rows], checksums)
    (one, one_fields), (batched, batched_fields) = stored[1], stored[4]
    assert len(one) == len(batched) == 6 * 42
    if method == "pysteps":
        assert batched == one and batched_fields == one_fields
    else:  # the network's arithmetic may differ in the last bit between batch sizes
        for a, b in zip(one, batched, strict=True):
            assert {k: v for k, v in a.items() if not k.endswith("mm_h") and k not in ("depth_mm", "wet_fraction")} == \
                   {k: v for k, v in b.items() if not k.endswith("mm_h") and k not in ("depth_mm", "wet_fraction")}
            for key in ("mean_mm_h", "max_mm_h", "dam_pixel_mm_h", "depth_mm", "wet_fraction"):
                assert a[key] == pytest.approx(b[key], abs=0.011), key


def test_stored_at_is_the_commit_time_and_arrived_at_the_file_arrival(make_service, shared_radar, tmp_path):
    svc = make_service()
    files = hf.event_files(shared_radar, 0, 4)
    staging = tmp_path / "staging"
    staging.mkdir()
    before = time.time()
    for f in files:
        (staging / f.name).write_bytes(f.read_bytes())
        os.utime(staging / f.name, (1e9, 1e9))  # mtime of 2001: kept by the rename, not the arrival
        os.rename(staging / f.name, svc.settings.inbox / f.name)
    after = time.time()
    svc.ingest()
    svc.forecast()
    with svc.sessions() as s:
        from nowcast_core.db.queries import frame_rows

        frames = frame_rows(s)
        [row] = {r["issue_time"]: r for r in forecast_rows(s)}.values()
        [run] = s.scalars(select(ForecastRun))
    for f in frames:
        assert before - 0.05 <= _utc(f["arrived_at"]).timestamp() <= after + 0.05
        assert _utc(f["arrived_at"]) <= _utc(f["received_at"])
    assert run.finished_at > run.started_at and row["stored_at"] == run.finished_at.isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    assert Path(svc.settings.forecasts / run.field_path).is_file()
