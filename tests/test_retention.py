"""Retention: the files of runs past NOWCAST_KEEP_FORECAST_FILES_DAYS are deleted, their rows stay.

Two issue times a day apart on synthetic scans; with max_scan_age_h 1 the retention may be as short
as 0.1 day (2.4 h), so the first run is past it and the second is not. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import helpers_frames as hf
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select
from typer.testing import CliRunner

from nowcast_app.cli import app as cli_app
from nowcast_app.web import create_app
from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service
from nowcast_core.db.queries import export_fields, forecast_rows, pruned_runs
from nowcast_core.db.schema import EnsembleRun, ForecastRun
from nowcast_core.times import iso_utc

KEEP = {"max_scan_age_h": 1, "keep_forecast_files_days": 0.1, "min_free_disk_gb": 0}
OLD = hf.EVENT_START + hf.minutes(3)  # the first issue time (its 4th scan)
NEW = OLD + timedelta(days=1)


def _scans(svc: Service, start) -> None:
    for k in range(4):
        hf.write_scan(svc.settings.inbox, start + hf.minutes(k), hf.good_frame(k))
    svc.ingest()
    svc.forecast(production=True)


def _files(svc: Service) -> dict:
    """Issue time -> the stored files (field and probabilities) of its runs."""
    out: dict = {}
    with svc.sessions() as s:
        for run in s.scalars(select(ForecastRun)):
            out.setdefault(run.issue_time, []).append(svc.settings.forecasts / run.field_path)
        for run in s.scalars(select(EnsembleRun)):
            out.setdefault(run.issue_time, []).append(svc.settings.forecasts / run.probability_path)
    return out


@pytest.fixture
def two_days(make_service):
    svc = make_service(**KEEP)
    _scans(svc, hf.EVENT_START)
    _scans(svc, hf.EVENT_START + timedelta(days=1))
    files = _files(svc)
    assert sorted(files) == [OLD, NEW] and all(len(v) == 2 for v in files.values())  # a field and a probability file
    assert all(p.is_file() for v in files.values() for p in v)
    return svc, files


def _pruned_at(svc: Service) -> dict:
    with svc.sessions() as s:
        return {(type(r).__name__, r.issue_time): r.files_pruned_at
                for table in (ForecastRun, EnsembleRun) for r in s.scalars(select(table))}


def test_old_files_go_their_rows_stay_and_new_files_stay(two_days):
    svc, files = two_days
    with svc.sessions() as s:
        rows_before = forecast_rows(s, since=OLD)
    old_bytes = sum(p.stat().st_size for p in files[OLD])

    dry = svc.prune(dry_run=True)
    assert (dry.runs, dry.files, dry.bytes, dry.dry_run) == (2, 2, old_bytes, True)
    assert "would delete 2 forecast files" in dry.describe()
    assert all(p.is_file() for v in files.values() for p in v)
    assert all(at is None for at in _pruned_at(svc).values())

    report = svc.prune()
    assert report.before == NEW - timedelta(days=0.1)
    assert (report.runs, report.files, report.bytes, report.already_gone, report.failed) == (2, 2, old_bytes, 0, 0)
    assert not any(p.exists() for p in files[OLD]) and all(p.is_file() for p in files[NEW])
    marks = _pruned_at(svc)
    assert marks[("ForecastRun", OLD)] is not None and marks[("EnsembleRun", OLD)] is not None
    assert marks[("ForecastRun", NEW)] is None and marks[("EnsembleRun", NEW)] is None
    # the emptied day folder is removed; the month folder still holds the new day
    assert not files[OLD][0].parent.exists() and files[NEW][0].parent.is_dir()

    with svc.sessions() as s:
        assert forecast_rows(s, since=OLD) == rows_before  # dam results (and their probabilities) are kept
        issue_times, rain, missing = export_fields(s, svc.settings.forecasts, since=OLD)
        assert issue_times == [iso_utc(NEW)] and rain.shape == (1, 6, 120, 120)
        assert pruned_runs(s, since=OLD) == (1, OLD)
    assert svc.status()["forecast_files_since"] == iso_utc(NEW)

    again = svc.prune()  # nothing left past the retention
    assert (again.runs, again.files) == (0, 0)


def test_a_file_already_gone_is_marked_and_one_that_cannot_go_is_retried(two_days, monkeypatch):
    svc, files = two_days
    field, probability = sorted(files[OLD], key=lambda p: "_prob_" in p.name)
    field.unlink()
    real_unlink = Path.unlink

    def refuse(path, *args, **kwargs):
        if path.name == probability.name:
            raise PermissionError(13, "Permission denied")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    report = svc.prune(max_runs=10)
    assert (report.runs, report.files, report.already_gone, report.failed) == (1, 0, 1, 1)
    assert "could not be deleted" in report.describe() and probability.is_file()
    assert svc.status()["prune_failing"] is True  # the operator sees it (status, the page's API, /metrics)
    marks = _pruned_at(svc)
    assert marks[("ForecastRun", OLD)] is not None and marks[("EnsembleRun", OLD)] is None

    monkeypatch.setattr(Path, "unlink", real_unlink)
    retried = svc.prune()
    assert (retried.runs, retried.files, retried.failed) == (1, 1, 0) and not probability.exists()


def test_at_most_max_runs_a_time_then_the_rest(two_days):
    svc, files = two_days
    first = svc.prune(max_runs=1)
    assert (first.runs, first.more) == (1, True) and "more remain" in first.describe()
    rest = svc.prune(max_runs=1)
    assert (rest.runs, rest.more) == (1, False)
    assert not any(p.exists() for p in files[OLD])


def test_zero_keeps_every_file(two_days):
    svc, files = two_days
    svc.settings.keep_forecast_files_days = 0
    assert svc.prune() is None
    assert all(p.is_file() for v in files.values() for p in v)


def test_the_map_of_a_pruned_run_says_so(two_days):
    svc, _ = two_days
    svc.prune()
    with TestClient(create_app(svc.settings)) as client:
        gone = client.get(f"/api/v1/fields/{iso_utc(OLD)}/10.png")
        assert gone.status_code == 410
        assert "no longer kept" in gone.json()["error"] and "NOWCAST_KEEP_FORECAST_FILES_DAYS" in gone.json()["error"]
        kept = client.get(f"/api/v1/fields/{iso_utc(NEW)}/10.png")
        assert kept.status_code == 200 and kept.headers["content-type"] == "image/png"


def test_the_cycle_prunes_first_and_a_failure_does_not_stop_it(two_days, monkeypatch, caplog):
    from flows.forecast_cycle import prune

    svc, files = two_days
    logger = logging.getLogger("nowcast.cycle")  # Prefect's logging setup may stop it propagating to the root
    monkeypatch.setattr(logger, "handlers", [*logger.handlers, caplog.handler])
    caplog.set_level(logging.INFO, logger="nowcast.cycle")
    assert prune.fn(svc) == 2
    assert any("deleted 2 forecast files" in r.getMessage() for r in caplog.records)
    assert not any(p.exists() for p in files[OLD])

    status = svc.status()
    assert re.search(r"Z: deleted 2 forecast files \(0\.\d MB\) of 1 forecast run and 1 ensemble run issued before "
                     f"{NEW - timedelta(days=0.1):%Y-%m-%dT%H:%MZ}$", status["last_prune"]), status["last_prune"]
    assert status["prune_failing"] is False

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("nowcast_core.cycle.service.prune_forecast_files", broken)
    assert prune.fn(svc) == 0
    assert any("not pruned; the next cycle retries" in r.getMessage() for r in caplog.records)
    status = svc.status()
    assert status["prune_failing"] is True and "OSError: [Errno 5] Input/output error" in status["last_prune"]
    with TestClient(create_app(svc.settings)) as client:
        api = client.get("/api/v1/status").json()
        assert api["prune_failing"] is True and api["keep_forecast_files_days"] == 0.1
        assert api["forecast_files_since"] == iso_utc(NEW)
        assert "nowcast_prune_failing 1.0" in client.get("/metrics").text


def test_a_retention_shorter_than_verification_reads_is_refused(tmp_path):
    with pytest.raises(ValidationError, match=r"more than 73 h \(3.042 days\)"):
        load_settings(home=tmp_path, keep_forecast_files_days=3)
    assert load_settings(home=tmp_path, keep_forecast_files_days=0).keep_forecast_files_days == 0
    assert load_settings(home=tmp_path, keep_forecast_files_days=3.5).keep_forecast_files_days == 3.5
    result = CliRunner().invoke(cli_app, ["status"], env={"NOWCAST_HOME": str(tmp_path),
                                                          "NOWCAST_KEEP_FORECAST_FILES_DAYS": "2"})
    assert result.exit_code == 2
    assert "NOWCAST_KEEP_FORECAST_FILES_DAYS" in result.output and "more than 73 h (3.042 days)" in result.output


def test_nowcast_prune(two_days):
    svc, files = two_days
    env = {"NOWCAST_HOME": str(svc.settings.home), "NOWCAST_DATABASE_URL": svc.settings.database_url,
           "NOWCAST_METHOD": "persistence", "NOWCAST_BASELINES": "[]", "NOWCAST_MAX_SCAN_AGE_H": "1",
           "NOWCAST_MIN_FREE_DISK_GB": "0"}
    runner = CliRunner()
    short = runner.invoke(cli_app, ["prune", "--keep-days", "0.05"], env=env)
    assert short.exit_code == 2 and "--keep-days 0.05: must be more than 2 h (0.08333 days)" in short.output
    dry = runner.invoke(cli_app, ["prune", "--keep-days", "0.1", "--dry-run"], env=env)
    assert dry.exit_code == 0 and "would delete 2 forecast files" in dry.output
    assert all(p.is_file() for p in files[OLD])
    done = runner.invoke(cli_app, ["prune", "--keep-days", "0.1"], env=env)
    assert done.exit_code == 0 and "deleted 2 forecast files" in done.output
    assert not any(p.exists() for p in files[OLD]) and all(p.is_file() for p in files[NEW])
    nothing = runner.invoke(cli_app, ["prune", "--keep-days", "0.1"], env=env)
    assert nothing.exit_code == 0 and "left to delete" in nothing.output
    status = runner.invoke(cli_app, ["status", "--format", "json"], env=env)
    info = json.loads(status.stdout)
    assert info["forecast_files_since"] == iso_utc(NEW)
    assert info["feed_stale"] is True  # scans of 2010: the command line says so, as the page does
    out = svc.settings.home / "export.npz"
    export = runner.invoke(cli_app, ["export", "--out", str(out), "--since", iso_utc(OLD)], env=env)
    assert export.exit_code == 0 and "1 older runs of the period" in export.output
    with np.load(out, allow_pickle=False) as npz:
        assert list(npz["issue_times"]) == [iso_utc(NEW)]


def test_a_file_deleted_by_hand_is_skipped_with_a_warning_not_a_failure(two_days, caplog):
    svc, files = two_days
    for path in files[NEW]:  # not pruned: deleted by hand (or its mark lost by a database downgrade)
        path.unlink()
    hf.write_scan(svc.settings.inbox, NEW + hf.minutes(1), hf.good_frame(4))  # observes the new run's +10
    svc.ingest()
    caplog.set_level(logging.WARNING)
    assert svc.verify() == 0
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert f"verification skipped for 1 run whose file is missing from the forecasts folder though not pruned " \
           f"(deleted by hand?): {NEW:%Y-%m-%dT%H:%MZ}" in messages
    assert "probabilistic verification skipped for 1 run whose" in messages
    with svc.sessions() as s:
        issue_times, rain, missing = export_fields(s, svc.settings.forecasts, since=OLD)
        assert (issue_times, rain.shape[0], missing) == ([iso_utc(OLD)], 1, [iso_utc(NEW)])
        s.delete(s.scalar(select(EnsembleRun).where(EnsembleRun.issue_time == NEW)))
        s.commit()
    svc.forecast_ensembles()
    assert any("the production ensemble skipped for 1 run whose" in r.getMessage() for r in caplog.records)
    with TestClient(create_app(svc.settings)) as client:
        r = client.get(f"/api/v1/fields/{iso_utc(NEW)}/10.png")
        assert r.status_code == 404 and "missing from the forecasts folder" in r.json()["error"]
