"""`nowcast serve` and `nowcast run` as a user starts them (real entry point, subprocesses):
loopback only by default, a public address refused without a token, 401 without it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import helpers_frames as hf
import httpx
from test_cli import _nowcast_exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    env.update({"NOWCAST_HOME": str(home), "NOWCAST_METHOD": "persistence", "NOWCAST_BASELINES": "[]",
                "NOWCAST_SETTLE_SECONDS": "0", "NOWCAST_REFERENCE_ENSEMBLE": "", **extra})
    return env


def _listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


def _wait_http(url: str, proc: subprocess.Popen, timeout_s: float, **kw) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited: {proc.communicate()[1][-3000:]}"
        try:
            return httpx.get(url, timeout=5, **kw)
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_public_address_without_token_is_refused(tmp_path):
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        proc = subprocess.run([*_nowcast_exe(), "serve", "--host", host, "--port", str(_free_port())],
                              env=_env(tmp_path / "home"), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "NOWCAST_API_TOKEN" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "home").exists()  # refused before anything was created


def _installed(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a migrated, empty installation at ``home`` (serve never creates one)."""
    env = _env(home, **extra)
    subprocess.run([*_nowcast_exe(), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    return env


def test_serve_listens_on_loopback_only_by_default(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([*_nowcast_exe(), "serve", "--port", str(port)], env=_installed(tmp_path / "home"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = _wait_http(f"http://127.0.0.1:{port}/api/v1/status", proc, 90)
        assert r.status_code == 200 and r.json()["newest_scan_time"] is None
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, nothing else
    finally:
        assert _stop(proc) == 0


def test_token_required_on_a_public_address(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([*_nowcast_exe(), "serve", "--host", "0.0.0.0", "--port", str(port)],
                            env=_installed(tmp_path / "home", NOWCAST_API_TOKEN="t0ken"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = _wait_http(f"http://127.0.0.1:{port}/api/v1/status", proc, 90)
        assert r.status_code == 401
        for path in ("/", "/metrics", "/api/v1/forecasts"):
            assert httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 401
            ok = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer t0ken"})
            assert ok.status_code == 200, path
    finally:
        assert _stop(proc) == 0


def test_run_serves_the_page_beside_the_daemon(tmp_path, shared_radar):
    home, port = tmp_path / "home", _free_port()
    hf.deliver(hf.event_files(shared_radar, 20, 5), home / "inbox")
    proc = subprocess.Popen([*_nowcast_exe(), "run"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(home, NOWCAST_WEB_PORT=str(port), NOWCAST_POLL_INTERVAL_S="5"),
                            start_new_session=True)
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/", proc, 120).status_code == 200
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if len(httpx.get(f"http://127.0.0.1:{port}/api/v1/forecasts").json()) == 42:
                break
            time.sleep(1)
        rows = httpx.get(f"http://127.0.0.1:{port}/api/v1/forecasts").json()
        assert len(rows) == 42 and rows[0]["method"] == "persistence"
        while time.monotonic() < deadline:  # alert levels follow the run's ensemble, a moment after its rows
            if len(httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts").json()) == 7:
                break
            time.sleep(1)
        assert len(httpx.get(f"http://127.0.0.1:{port}/api/v1/alerts").json()) == 7
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'nowcast_runs_stored_total{method="persistence"} 2.0' in metrics
        assert _listening(port) == {"0100007F"}
    finally:
        rc = _stop(proc)
    err = proc.stderr.read()
    assert rc == 0, err[-3000:]
    assert f"web page, API and /metrics on http://127.0.0.1:{port}/" in err


def test_run_no_web_leaves_the_port_closed(tmp_path, shared_radar):
    home, port = tmp_path / "home", _free_port()
    hf.deliver(hf.event_files(shared_radar, 20, 4), home / "inbox")
    proc = subprocess.run([*_nowcast_exe(), "run", "--once", "--no-web"], cwd=tmp_path, capture_output=True, text=True,
                          env=_env(home, NOWCAST_WEB_PORT=str(port), NOWCAST_ENSEMBLES="0"), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "open http" not in proc.stderr and _listening(port) == set()
