"""A failing forecast cycle shows in status, the page's API, the banner and /metrics, not only in the log
(operator trial: a full disk and an unwritable folder left status at "lag 10 min" and nothing else)."""

from __future__ import annotations

import errno

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from nowcast_app.web import create_app


def _health(settings) -> tuple:
    with TestClient(create_app(settings)) as client:  # a new app each time: the page shares answers for 2 s
        st = client.get("/api/v1/status").json()
        families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    return st["cycle_failures"], st["last_cycle_error"], families["nowcast_cycle_consecutive_failures"].samples[0].value


def test_failures_in_a_row_are_counted_with_their_reason_until_a_cycle_runs_through(make_sqlite_service):
    from datetime import UTC, datetime

    svc = make_sqlite_service()
    assert svc.status()["cycle_failures"] == 0 and svc.status()["last_cycle_error"] is None
    assert _health(svc.settings) == (0, None, 0.0)
    svc.record_cycle_failure(OSError(errno.ENOSPC, "No space left on device"),
                             now=datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    svc.record_cycle_failure(OSError(errno.ENOSPC, "No space left on device"),
                             now=datetime(2026, 11, 30, 23, 1, tzinfo=UTC))
    failures, error, gauge = _health(svc.settings)
    assert failures == 2 and gauge == 2.0
    assert error == "2026-11-30T23:01:00Z: [Errno 28] No space left on device"
    assert svc.status()["cycle_failures"] == 2
    svc.record_cycle(datetime.now(UTC), 0.5)  # a cycle that ran through ends the run
    assert _health(svc.settings) == (0, None, 0.0)


def test_a_database_outage_is_a_503_that_says_so_and_one_log_line(make_sqlite_service, tmp_path, caplog):
    import logging

    svc = make_sqlite_service()
    db = tmp_path / "nowcast.db"
    with TestClient(create_app(svc.settings)) as client:
        db.rename(tmp_path / "away.db")  # the page's own engine never makes a new one in its place
        with caplog.at_level(logging.ERROR, logger="nowcast.web"):
            r = client.get("/api/v1/forecasts")
        assert r.status_code == 503 and r.json()["error"].startswith("the database is unavailable: unable to open")
        assert not db.exists()
        lines = [rec for rec in caplog.records if rec.name == "nowcast.web"]
        assert len(lines) == 1 and lines[0].exc_info is None and "database unavailable on /api/v1/forecasts" in \
            lines[0].getMessage()


def test_status_reports_the_method_the_daemon_ran_not_this_shells_settings(make_sqlite_service):
    """An operator's shell lacks the service unit's NOWCAST_METHOD: status must not claim another method."""
    from datetime import UTC, datetime

    from nowcast_core.config import load_settings
    from nowcast_core.cycle.service import Service

    daemon = make_sqlite_service(method="persistence")
    assert "method_note" not in daemon.status()  # nothing recorded yet: these settings are all there is
    daemon.record_cycle(datetime.now(UTC), 0.5, "persistence")
    assert daemon.status()["method_in_use"] == "persistence" and "method_note" not in daemon.status()
    shell = Service(load_settings(home=daemon.settings.home, database_url=daemon.settings.database_url,
                                  method="pysteps", baselines=[], reference_ensemble=""))
    try:
        status = shell.status()
    finally:
        shell.close()
    assert status["method_in_use"] == "persistence" and status["method_of_these_settings"] == "pysteps"
    assert status["method_note"].startswith("the daemon's last cycle ran persistence; this command's settings resolve "
                                            "to pysteps")
