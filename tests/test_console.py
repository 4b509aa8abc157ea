"""The daemon's console: one line per cycle while idle and during catch-up, no TensorFlow
banner, no scheduler warnings, a quiet stop on Ctrl-C; ``NOWCAST_LOG_FORMAT=json`` gives one JSON object per line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import helpers_frames as hf

from flows.daemon import stop_daemon


def _daemon(home: Path, **env: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_", "TF_CPP"))}
    with socket.socket() as sock:  # the web page beside the daemon, on a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    full.update(NOWCAST_HOME=str(home), NOWCAST_POLL_INTERVAL_S="1", NOWCAST_SETTLE_SECONDS="0", NOWCAST_WEB_PORT=str(port),
                NOWCAST_BASELINES='["persistence"]',
                NOWCAST_REFERENCE_ENSEMBLE="",  # the STEPS reference's seconds would swamp 1-second cycles
                NOWCAST_MIN_FREE_DISK_GB="0", **env)  # a test machine's full disk would add a warning line
    return subprocess.Popen([sys.executable, "-c", "from nowcast_app.cli import main; main()", "run"], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _production_runs(home: Path) -> int:
    """Production runs stored with their production ensemble and their baseline run (the cycle's long
    steps; verification follows); -1 before the database exists."""
    import sqlite3

    try:
        with sqlite3.connect(home / "nowcast.db") as db:
            runs = db.execute("SELECT count(*) FROM forecast_runs WHERE is_production").fetchone()[0]
            baselines = db.execute("SELECT count(*) FROM forecast_runs WHERE NOT is_production").fetchone()[0]
            ensembles = db.execute("SELECT count(*) FROM ensemble_runs WHERE is_production").fetchone()[0]
            return min(runs, ensembles, baselines)
    except sqlite3.Error:
        return -1


def _temporary_servers(parent: int) -> list[int]:
    """The daemon's children that run Prefect's temporary server (uvicorn), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().split(") ")[-1].split()[1]) == parent:
                if b"uvicorn" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _console(home: Path, idle_seconds: float, deliver=None, expected_runs: int = 0, ctrl_c: bool = False,
             **env: str) -> list[str]:
    """The daemon's console: started, scans delivered, caught up, then ``idle_seconds`` idle, stopped
    (with ``ctrl_c`` by SIGINT to its whole process group, as Ctrl-C in a terminal does)."""
    proc = _daemon(home, **env)
    try:
        deadline = time.monotonic() + 180
        while _production_runs(home) < 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        if deliver:
            deliver()
        while _production_runs(home) < expected_runs and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(idle_seconds)
        if ctrl_c:  # Prefect's temporary server runs in a session of its own: Ctrl-C is not for it
            servers = _temporary_servers(proc.pid)
            assert servers and all(os.getsid(pid) != os.getsid(proc.pid) for pid in servers), servers
    finally:
        if ctrl_c:
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=30) == 0  # Prefect's temporary server did not get it: nothing to retry
        else:
            assert stop_daemon(proc, timeout_s=60) == 0
    return [line for line in proc.stdout.read().splitlines() if line.strip()]


def test_idle_and_catch_up_console_is_one_line_per_cycle(tmp_path, shared_radar):
    home = tmp_path / "home"
    scans = sorted((shared_radar / "knmi-w0").glob("RDR_*.npz"))[:9]
    lines = _console(home, 6.0, deliver=lambda: hf.deliver(scans, home / "inbox"), expected_runs=len(scans) - 3,
                     ctrl_c=True)
    text = "\n".join(lines)
    cycles = [line for line in lines if " cycle: " in line]
    assert len(cycles) >= 4, text  # the catch-up, then idle cycles every second
    other = [line for line in lines if " cycle: " not in line]
    # start (web page address, model loaded, daemon started) and stop (signal, stopped): nothing else
    assert len(other) <= 5, text
    assert not any(w in text for w in ("oneDNN", "cpu_feature_guard", "absl", "maximum number of running instances",
                                       "Traceback")), text
    assert not any(" WARNING " in line or " ERROR " in line for line in lines), text
    assert sum(int(re.search(r" cycle: (\d+) scans? registered", line)[1]) for line in cycles) == len(scans)


def test_json_log_format_is_one_object_per_line(tmp_path, shared_radar):
    home = tmp_path / "home"
    scans = sorted((shared_radar / "knmi-w0").glob("RDR_*.npz"))[:4]
    home.mkdir()
    (home / "nowcast.toml").write_text('log_format = "json"\n')  # set in the file, as the environment would
    lines = _console(home, 2.0, deliver=lambda: hf.deliver(scans, home / "inbox"), expected_runs=1)
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"].startswith("cycle: ") for e in entries)
    assert all(e["time"].endswith("Z") for e in entries)


def test_a_second_ctrl_c_is_told_the_daemon_is_already_stopping(caplog):
    import logging
    import threading

    from flows.daemon import stop_on_signal

    stop = threading.Event()
    handler = stop_on_signal(stop)
    with caplog.at_level(logging.INFO, logger="nowcast"):
        handler(signal.SIGINT, None)
        assert stop.is_set()
        handler(signal.SIGINT, None)
        handler(signal.SIGTERM, None)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "received SIGINT: stopping after the running cycle"
    assert messages[1].startswith("received SIGINT again: already stopping") and "SIGKILL" in messages[1]
    assert messages[2].startswith("received SIGTERM again: already stopping") and len(messages) == 3


def test_describe_cycle_names_what_an_operator_needs():
    from datetime import UTC, datetime, timedelta

    from flows.forecast_cycle import describe_cycle

    line = describe_cycle({"inbox": {"registered": 3, "rejected": 1, "waiting": 0},
                           "production": {"runs": 2, "method": "rainnet", "note": ""},
                           "baselines": [{"method": "pysteps", "runs": 2},
                                         {"method": "steps", "runs": 1, "ensemble": True}], "verified": 0},
                          datetime.now(UTC) - timedelta(minutes=4))
    assert line.startswith("cycle: 3 scans registered, 1 rejected")
    one = describe_cycle({"inbox": {"registered": 1, "rejected": 0, "waiting": 0},
                          "production": {"runs": 1, "method": "rainnet", "note": ""}, "baselines": [], "verified": 0}, None)
    assert one.startswith("cycle: 1 scan registered, 0 rejected;")
    assert "4 runs stored (2 production); 1 reference ensemble run;" in line  # as `nowcast status` counts forecast runs
    assert "newest scan 4 min old" in line and "method rainnet" in line
    assert "\n" not in line
    summary = {"inbox": {"registered": 0, "rejected": 0, "waiting": 0}, "production": {"runs": 0, "method": "rainnet",
               "note": ""}, "baselines": [], "verified": 0}
    assert "newest scan 4217.1 days old" in describe_cycle(summary, datetime.now(UTC) - timedelta(days=4217.1))
    assert "newest scan 5 min ahead of this machine's clock" in describe_cycle(summary, datetime.now(UTC)
                                                                                + timedelta(minutes=5, seconds=2))


def test_a_temporary_server_stopped_from_outside_is_seen(monkeypatch):
    """The daemon's fast exit (no minutes of retried events) is taken only when Prefect's temporary
    server has exited, e.g. SIGTERMed with every process of an old ``KillMode=control-group`` unit."""
    from types import SimpleNamespace

    from prefect.server.api.server import SubprocessASGIServer

    from flows.embedded import temporary_server_gone

    def server(returncode):
        return SimpleNamespace(server_process=SimpleNamespace(poll=lambda: returncode))

    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})
    assert not temporary_server_gone()  # none started (a real Prefect server is used)
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {None: server(None)})
    assert not temporary_server_gone()  # running: Prefect's own exit stops it after its events
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {None: server(-15)})
    assert temporary_server_gone()
