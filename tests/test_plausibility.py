"""Scans that cannot be real weather are registered with their reason, every run carries its
``input_quality``, and no alert comes from input that is not "ok".
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import helpers_frames as hf
import numpy as np
import pytest
from sqlalchemy import create_engine, select, text
from typer.testing import CliRunner

from nowcast_app.cli import app
from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service
from nowcast_core.db import downgrade, upgrade
from nowcast_core.db.queries import forecast_rows, frame_rows
from nowcast_core.db.schema import ForecastRun, FrameRecord
from nowcast_core.inbox.plausibility import (
    OK,
    QualityThresholds,
    ScanStats,
    assess,
    input_quality,
    scan_stats,
)
from nowcast_core.io import read_folder

LIMITS = QualityThresholds()


def stats(nodata=0.0, wet=0.3, mean=1.0, saturated=0.0) -> ScanStats:
    return ScanStats(nodata, wet, mean, saturated)


# --- the checks --------------------------------------------------------------------------------


def test_defaults_are_the_settings_defaults():
    assert QualityThresholds.from_settings(load_settings()) == LIMITS


def test_outage_is_more_than_the_limit_of_the_grid_without_coverage():
    assert assess(stats(nodata=LIMITS.max_nodata_fraction), None, LIMITS) == OK
    quality = assess(stats(nodata=0.87), stats(), LIMITS)
    assert quality.startswith("outage: 87% of the grid without coverage")
    nodata = np.ones(hf.GRID, bool)
    assert assess(scan_stats(np.zeros(hf.GRID, np.uint8), nodata), stats(), LIMITS).startswith("outage: 100%")


def test_saturation_is_a_share_of_covered_pixels_at_the_top_of_the_scale():
    frame = hf.good_frame()
    edge = int(LIMITS.max_saturated_fraction * frame.size)
    frame.flat[:edge] = 250
    assert assess(scan_stats(frame, np.zeros(hf.GRID, bool)), None, LIMITS) == OK
    frame.flat[:edge + 1] = 255
    quality = assess(scan_stats(frame, np.zeros(hf.GRID, bool)), None, LIMITS)
    assert quality.startswith("saturated: ") and "p >= 250" in quality
    assert assess(scan_stats(np.full(hf.GRID, 255, np.uint8), np.zeros(hf.GRID, bool)), None, LIMITS) \
        .startswith("saturated: 100% of covered pixels")


def test_jumps_from_the_scan_before():
    before = stats(wet=0.2, mean=0.5)
    assert assess(stats(wet=0.2 + LIMITS.max_wet_fraction_jump - 0.01, mean=0.5), before, LIMITS) == OK
    assert assess(stats(wet=0.9, mean=0.5), before, LIMITS).startswith("jump: wet area 20% -> 90%")
    assert assess(stats(wet=0.0, mean=0.5), stats(wet=0.95, mean=0.5), LIMITS).startswith("jump: wet area")
    quality = assess(stats(mean=0.5 + LIMITS.max_mean_rate_jump_mm_h + 1), before, LIMITS)
    assert quality.startswith("jump: mean rain rate 0.5 -> 11.5 mm/h")
    assert assess(stats(wet=0.95, mean=30), None, LIMITS) == OK, "without a scan before, no jump is judged"
    strict = QualityThresholds(max_mean_rate_jump_mm_h=0.1)
    assert assess(stats(mean=0.7), before, strict).startswith("jump: mean rain rate")


def test_input_quality_names_each_implausible_input():
    t = datetime(2024, 5, 1, 12, 0)
    assert input_quality([("t-30", t, OK), ("t", t, OK)]) == OK
    assert input_quality([("t-10", t, "outage: x"), ("t", t, "saturated: y")]) == \
        "t-10 (2024-05-01T12:00Z) outage: x; t (2024-05-01T12:00Z) saturated: y"


def test_no_real_scan_is_flagged(shared_radar):
    """The defaults leave every scan of the real events alone (with the jump from the scan before)."""
    n_scans = n_pairs = 0
    flagged = []
    for folder in sorted(p for p in shared_radar.iterdir() if p.is_dir()):
        previous = None
        for frame in read_folder(folder):
            current = scan_stats(frame.frame, frame.nodata)
            before = previous[1] if previous and frame.scan_time - previous[0] == timedelta(minutes=10) else None
            n_pairs += before is not None
            quality = assess(current, before, LIMITS)
            if quality != OK:
                flagged.append((folder.name, frame.scan_time, quality))
            previous = (frame.scan_time, current)
            n_scans += 1
    assert n_scans > 2000 and n_pairs > 2000
    assert flagged == []


# --- through ingest, the cycle and the commands ------------------------------------------------------


def _event_with_an_outage_and_a_saturated_scan(svc, shared_radar) -> list[datetime]:
    files = hf.event_files(shared_radar, 0, 10)
    times = hf.deliver(files[:4] + files[6:], svc.settings.inbox)
    outage, saturated = hf.EVENT_START + hf.minutes(4), hf.EVENT_START + hf.minutes(5)
    hf.write_scan(svc.settings.inbox, outage, np.zeros(hf.GRID, np.uint8), np.ones(hf.GRID, bool))
    hf.write_scan(svc.settings.inbox, saturated, np.full(hf.GRID, 255, np.uint8))
    return sorted(times + [outage, saturated])


def test_outage_and_saturation_are_registered_and_no_forecast_from_them_is_ok(make_service, shared_radar):
    svc = make_service()
    times = _event_with_an_outage_and_a_saturated_scan(svc, shared_radar)
    outage, saturated = times[4], times[5]
    report = svc.ingest()
    assert report.registered == times and report.rejected == []
    assert [t for t, _ in report.flagged] == [outage, saturated]
    svc.forecast()
    with svc.sessions() as s:
        quality = dict(s.execute(select(FrameRecord.scan_time, FrameRecord.quality)).all())
        runs = list(s.scalars(select(ForecastRun).order_by(ForecastRun.issue_time)))
        for run in runs:
            run.results  # noqa: B018 - load
    assert quality[outage].startswith("outage: 100% of the grid")
    assert quality[saturated].startswith("saturated: 100% of covered pixels")
    assert {t: q for t, q in quality.items() if t not in (outage, saturated)} == {t: OK for t in times[:4] + times[6:]}

    assert [r.issue_time for r in runs] == times[3:]
    for run in runs:
        inputs = {run.issue_time - timedelta(minutes=m) for m in (0, 10, 20, 30)}
        bad = sorted(inputs & {outage, saturated})
        if bad:
            assert not run.input_ok and run.input_quality != OK
            assert all(f"({t:%Y-%m-%dT%H:%MZ}) {quality[t]}" in run.input_quality for t in bad)
            assert all(r.alert is None for r in run.results)
        else:
            assert run.input_ok and run.input_quality == OK
    assert sum(not r.input_ok for r in runs) == 5  # issue times t4 .. t8

    with svc.sessions() as s:
        rows = forecast_rows(s, since=times[0])
        frames = frame_rows(s)
    by_issue = {r.issue_time: r.input_quality for r in runs}
    assert {row["input_quality"] for row in rows if row["issue_time"] == _iso(saturated)} == {by_issue[saturated]}
    assert all(row["input_quality"] == by_issue[_parse(row["issue_time"])] for row in rows)
    assert [f["quality"] for f in frames if f["quality"] != OK] == [quality[outage], quality[saturated]]


def test_alerts_are_withheld_only_because_of_the_input(tmp_path):
    """The same saturated scans, once with the checks and once without: only the checks withhold alerts."""
    start = datetime(2021, 7, 1, 0, 0, tzinfo=hf.EVENT_START.tzinfo)
    alerts = {}
    for label, limit in (("checked", LIMITS.max_saturated_fraction), ("unchecked", 1.0)):
        svc = Service(load_settings(home=tmp_path / label, settle_seconds=0, method="persistence", baselines=[],
                                    max_saturated_fraction=limit))
        try:
            svc.migrate()
            for k in range(4):
                hf.write_scan(svc.settings.inbox, start + hf.minutes(k), np.full(hf.GRID, 255, np.uint8))
            svc.ingest()
            svc.forecast()
            with svc.sessions() as s:
                [run] = s.scalars(select(ForecastRun)).all()
                alerts[label] = (run.input_quality, {r.alert for r in run.results})
        finally:
            svc.close()
    assert alerts["unchecked"][0] == OK and "emergency" in alerts["unchecked"][1]
    assert alerts["checked"][0].startswith("t-30 ") and alerts["checked"][1] == {None}


def test_an_impossible_jump_is_flagged_at_ingest(make_service, shared_radar):
    svc = make_service()
    [t0] = hf.deliver(hf.event_files(shared_radar, 0, 1), svc.settings.inbox)
    hf.write_scan(svc.settings.inbox, t0 + hf.minutes(1), np.full(hf.GRID, 200, np.uint8))  # ~23 mm/h everywhere
    report = svc.ingest()
    assert len(report.registered) == 2
    [(t, quality)] = report.flagged
    assert t == t0 + hf.minutes(1) and quality.startswith("jump: ")


def test_commands_show_quality_and_input_quality(make_service, shared_radar):
    svc = make_service()
    times = _event_with_an_outage_and_a_saturated_scan(svc, shared_radar)
    svc.ingest()
    svc.forecast()
    env = {"NOWCAST_HOME": str(svc.settings.home), "NOWCAST_DATABASE_URL": svc.settings.database_url,
           "NOWCAST_METHOD": "persistence", "NOWCAST_BASELINES": "[]"}
    runner = CliRunner()

    def out(*args):
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    rows = json.loads(out("forecasts", "--since", _iso(times[0]), "--format", "json"))
    assert {r["input_quality"] == OK for r in rows} == {True, False}
    latest = json.loads(out("forecasts", "--format", "json"))
    assert {r["input_quality"] for r in latest} == {OK}  # t9's inputs t6 .. t9 are all real
    table = out("forecasts", "--issue-time", _iso(times[5]))
    assert "input_quality" in table and "saturated" in table
    lines = list(csv.DictReader(io.StringIO(out("forecasts", "--since", _iso(times[0]), "--format", "csv"))))
    assert {row["input_quality"] for row in lines} == {r["input_quality"] for r in rows}
    frames = json.loads(out("frames", "--format", "json"))
    assert sum(f["quality"] != OK for f in frames) == 2
    status = json.loads(out("status", "--format", "json"))
    assert status["last_forecast_input_quality"] == OK


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


# --- the migration ---------------------------------------------------------------------------------


def test_migration_0003_marks_older_rows_unchecked_and_goes_back(db_url):
    upgrade(db_url, "0002")
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO frames (scan_time, checksum, archive_path, received_at, nodata_fraction, "
                              "wet_fraction) VALUES ('2024-01-01 00:00:00', 'c', '/a', '2024-01-01 00:00:00', 0, 0)"))
            conn.execute(text("INSERT INTO forecast_runs (issue_time, method, model_version, is_production, status, "
                              "note, started_at, finished_at, forecast_seconds) VALUES ('2024-01-01 00:00:00', 'm', "
                              "'v', true, 'ok', '', '2024-01-01 00:00:00', '2024-01-01 00:00:00', 1)"))
        upgrade(db_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT quality, mean_mm_h FROM frames")).one() == ("unchecked", None)
            assert conn.execute(text("SELECT input_quality FROM forecast_runs")).scalar_one() == "unchecked"
        downgrade(db_url, "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM frames")).scalar_one() == 1
            with pytest.raises(Exception):
                conn.execute(text("SELECT quality FROM frames"))
    finally:
        engine.dispose()
