"""The HTTP API against a home filled by a real cycle on real scans (see tests/web_home.py):
same rows as the command line, CSV, 4xx for bad parameters, no file outside the app, cache
headers, metrics, the token."""

from __future__ import annotations

import base64
import csv
import io
import json
import socket
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select
from typer.testing import CliRunner

from nowcast_app.cli import app as cli_app
from nowcast_app.web import create_app
from nowcast_app.web.server import WebThread
from nowcast_core.cycle.service import Service
from nowcast_core.db.queries import forecast_rows
from nowcast_core.db.schema import ForecastRun, RejectedFile
from nowcast_core.verification.stored import skill_rows

SECRET = "nowcast-secret-marker-4711"


@pytest.fixture(scope="module")
def client(web_home):
    with TestClient(create_app(web_home)) as c:
        yield c


@pytest.fixture(scope="module")
def svc(web_home):
    s = Service(web_home)
    yield s
    s.close()


def _cli_json(settings, *args):
    result = CliRunner().invoke(cli_app, [*args, "--format", "json"],
                                env={"NOWCAST_HOME": str(settings.home), "NOWCAST_METHOD": "pysteps"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_forecasts_are_the_command_lines_rows(client, web_home, svc):
    with svc.sessions() as s:
        issue_times = sorted(s.scalars(select(ForecastRun.issue_time).where(ForecastRun.is_production)))
    first = issue_times[0].isoformat().replace("+00:00", "Z")
    cases = [([], {}), (["--dam", "dam-3"], {"dam": "dam-3"}), (["--since", first], {"since": first}),
             (["--method", "persistence"], {"method": "persistence"}),
             (["--issue-time", first, "--dam", "dam-7"], {"issue_time": first, "dam": "dam-7"})]
    for args, query in cases:
        r = client.get("/api/v1/forecasts", params=query)
        assert r.status_code == 200, r.text
        assert r.json() == _cli_json(web_home, "forecasts", *args), query
    latest = client.get("/api/v1/forecasts").json()
    assert len(latest) == 42 and {x["issue_time"] for x in latest} == {issue_times[-1].isoformat().replace("+00:00", "Z")}
    every = client.get("/api/v1/forecasts", params={"since": first}).json()
    assert len(every) == 42 * len(issue_times)
    lead = client.get("/api/v1/forecasts", params={"since": first, "lead_minutes": 60}).json()
    assert lead == [x for x in every if x["lead_minutes"] == 60]
    with svc.sessions() as s:
        assert latest == json.loads(json.dumps(forecast_rows(s)))


def test_csv_has_the_same_rows(client):
    rows = client.get("/api/v1/forecasts").json()
    r = client.get("/api/v1/forecasts", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(r.text)))
    # a dict value (prob_accum_ge, prob_rate_ge) is one column per key: prob_rate_ge_5
    flat = [{(f"{k}_{kk}" if isinstance(v, dict) else k): vv for k, v in row.items()
             for kk, vv in (v.items() if isinstance(v, dict) else [(None, v)])} for row in rows]
    assert any("prob_rate_ge_5" in row for row in flat)
    assert len(parsed) == len(rows) and list(parsed[0]) == list(flat[0])
    for got, want in zip(parsed, flat, strict=True):
        assert got == {k: "" if v is None else str(v) for k, v in want.items()}
    skill = client.get("/api/v1/skill", params={"format": "csv"})
    header = next(csv.reader(io.StringIO(skill.text)))
    assert {"method", "lead_minutes", "mae_mm_h", "csi_0.1", "csi_1", "far_10"} <= set(header)
    for path in ("/api/v1/dams", "/api/v1/alerts", "/api/v1/alerts/history"):
        assert client.get(path, params={"format": "csv"}).status_code == 200


@pytest.mark.parametrize("path,params,status,words", [
    ("/api/v1/forecasts", {"dam": "dam-99"}, 404, "unknown dam"),
    ("/api/v1/forecasts", {"method": "magic"}, 404, "no stored runs of method"),
    ("/api/v1/forecasts", {"since": "yesterday"}, 422, "not an ISO 8601 time"),
    ("/api/v1/forecasts", {"issue_time": "2020-02-30T00:00Z"}, 422, "not an ISO 8601 time"),
    ("/api/v1/forecasts", {"lead_minutes": -10}, 422, "lead_minutes"),
    ("/api/v1/forecasts", {"lead_minutes": 15}, 422, "lead_minutes"),
    ("/api/v1/forecasts", {"lead_minutes": "soon"}, 422, "lead_minutes"),
    ("/api/v1/forecasts", {"since": "2010-08-26T06:00Z", "until": "2010-08-26T05:00Z"}, 422, "before since"),
    ("/api/v1/forecasts", {"format": "xml"}, 422, "format"),
    ("/api/v1/skill", {"by": "weather"}, 422, "by"),
    ("/api/v1/skill", {"since": "2010-08-27", "until": "2010-08-26"}, 422, "before since"),
    ("/api/v1/alerts", {"dam": "nope"}, 404, "unknown dam"),
    ("/api/v1/alerts/history", {"limit": 0}, 422, "limit"),
    ("/api/v1/series", {"hours": -1}, 422, "hours"),
    ("/api/v1/fields/2010-08-26T05:30Z/-10.png", {}, 422, "lead_minutes"),
    ("/api/v1/fields/2010-08-26T05:30Z/15.png", {}, 422, "lead_minutes"),
    ("/api/v1/fields/noon/10.png", {}, 422, "not an ISO 8601 time"),
    ("/api/v1/fields/1999-01-01T00:00Z/10.png", {}, 404, "no stored"),
    ("/api/v1/fields/1999-01-01T00:00Z/0.png", {}, 404, "no scan"),
    ("/api/v1/fields/2010-08-26T05:30Z/ten.png", {}, 404, "LEAD.png"),
    ("/api/v1/scans/yesterday.png", {}, 422, "not an ISO 8601 time"),
    ("/api/v1/nothing", {}, 404, "not found"),
])
def test_bad_parameters_get_a_short_json_error(client, path, params, status, words):
    r = client.get(path, params=params)
    assert r.status_code == status, r.text
    body = r.json()
    assert words in body["error"] and "Traceback" not in r.text
    assert r.headers["cache-control"] == "no-store"
    if "unknown dam" in words:
        assert body["known_dams"] == [f"dam-{k}" for k in range(1, 8)]


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A request line sent as is (no client normalises the path)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_no_path_reaches_a_file_outside_the_app(web_home, tmp_path):
    (web_home.home / "secret.txt").write_text(SECRET)
    (tmp_path / "secret.txt").write_text(SECRET)
    targets = ["/static/../secret.txt", "/static/../../secret.txt", "/static/%2e%2e/%2e%2e/secret.txt",
               "/static/..%2f..%2fsecret.txt", "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
               "/static/../../../../../../etc/passwd", "/static//etc/passwd", f"/static/{tmp_path}/secret.txt",
               "/static/%2Fetc%2Fpasswd", "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
               "/api/v1/fields/..%2F..%2F..%2Fetc%2Fpasswd/10.png", "/api/v1/fields/2010-08-26T05:30Z/..%2F..%2Fsecret.txt",
               "/api/v1/scans/..%2F..%2Fsecret.txt", "/api/v1/scans/%2Fetc%2Fpasswd.png",
               "/api/v1/fields/2010-08-26T05:30Z/10.png?method=../../secret", "/?name=../../secret.txt",
               "/docs/../../secret.txt", f"/static/{web_home.home}/secret.txt", "/static/..\\..\\secret.txt"]
    web = WebThread(web_home, "127.0.0.1", _free_port())
    assert web.start()
    try:
        port = web.server.config.port
        for target in targets:
            status, body = _raw_get(port, target)
            assert SECRET.encode() not in body and b"root:" not in body, target
            assert status in (200, 400, 404, 422), (target, status)
            if status == 200:  # only the app's own pages answer (the dashboard for "/?name=...")
                assert b"<!doctype html>" in body, target
        assert _raw_get(port, "/static/app.js")[0] == 200
    finally:
        web.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_field_images_and_cache_headers(client):
    status = client.get("/api/v1/status")
    assert "no-cache" in status.headers["cache-control"]
    issue = status.json()["last_run_issue_time"]
    assert "max-age=10" in client.get("/api/v1/forecasts").headers["cache-control"]
    seen = set()
    for lead in (0, 10, 60):
        r = client.get(f"/api/v1/fields/{issue}/{lead}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content[:8] == b"\x89PNG\r\n\x1a\n" and len(r.content) > 10_000
        assert "immutable" in r.headers["cache-control"] and "max-age=31536000" in r.headers["cache-control"]
        again = client.get(f"/api/v1/fields/{issue}/{lead}.png", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and not again.content
        seen.add(r.content)
    assert len(seen) == 3  # the scan and two different leads
    scan = client.get(f"/api/v1/scans/{issue}.png")
    assert scan.status_code == 200 and scan.content == client.get(f"/api/v1/fields/{issue}/0.png").content
    assert client.get(f"/api/v1/fields/{issue}/30.png", params={"method": "persistence"}).status_code == 200


def test_status_dams_alerts_series(client, web_home, svc):
    st = client.get("/api/v1/status").json()
    with svc.sessions() as s:
        newest = max(s.scalars(select(ForecastRun.issue_time)))
        n_prod = s.scalar(select(func.count(ForecastRun.id)).where(ForecastRun.is_production))
    assert st["newest_scan_time"] == newest.isoformat().replace("+00:00", "Z")
    assert st["last_run_issue_time"] == st["newest_scan_time"] and st["forecast_lag_minutes"] == 0.0
    assert st["method_in_use"] == "pysteps" and st["last_run_method"] == "pysteps" and st["fallback_reason"] is None
    assert st["feed_stale"] is True  # the scans are from 2010
    assert st["counts"]["production_runs"] == n_prod and st["open_alerts"] == []
    dams = client.get("/api/v1/dams").json()
    assert [d["dam"] for d in dams] == [f"dam-{k}" for k in range(1, 8)]
    assert all(d["thresholds"]["advisory_3h_mm"] == 60 and d["catchment"]["kind"] == "disc" for d in dams)
    alerts = client.get("/api/v1/alerts").json()
    assert [a["dam"] for a in alerts] == [f"dam-{k}" for k in range(1, 8)]
    hour = {r["dam"]: r["depth_mm"] for r in client.get("/api/v1/forecasts", params={"lead_minutes": 60}).json()}
    for a in alerts:
        assert a["issue_time"] == st["last_run_issue_time"] and a["observed_scans"] == 12
        assert a["forecast_1h_mm"] == pytest.approx(hour[a["dam"]], abs=0.01)
    assert client.get("/api/v1/alerts", params={"dam": "dam-2"}).json() == [alerts[1]]
    series = client.get("/api/v1/series", params={"hours": 1}).json()
    assert series["issue_time"] == st["last_run_issue_time"] and len(series["observed_times"]) == 6
    assert len(series["dams"]["dam-1"]["forecast"]) == 6
    three = client.get("/api/v1/series", params={"hours": 3}).json()
    assert three["observed_times"][-6:] == series["observed_times"]
    for a in alerts:
        assert three["dams"][a["dam"]]["observed_2h_mm"] == pytest.approx(a["observed_2h_mm"], abs=0.01)


def test_status_feed_is_fresh_by_the_given_clock(web_home, svc):
    with svc.sessions() as s:
        newest = max(s.scalars(select(ForecastRun.issue_time)))
    for minutes, stale in ((5, False), (25, True)):
        with TestClient(create_app(web_home, clock=lambda m=minutes: newest + timedelta(minutes=m))) as c:
            st = c.get("/api/v1/status").json()
            assert st["feed_stale"] is stale and st["newest_scan_age_minutes"] == minutes


def test_status_and_metrics_say_when_a_disk_runs_low(web_home):
    for limit_gb, low in ((0.0, False), (1e9, True)):  # 0: never; 1e9 GB: more than any disk has
        with TestClient(create_app(web_home.model_copy(update={"min_free_disk_gb": limit_gb}))) as c:
            st = c.get("/api/v1/status").json()
            assert st["disk_low"] is low and st["min_free_disk_gb"] == limit_gb and st["disk_free_gb"] > 0
            assert "home" in st["disk_free_folders"]
            families = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").text)}
            assert families["nowcast_disk_low"].samples[0].value == (1.0 if low else 0.0)
            free = families["nowcast_disk_free_bytes"].samples
            assert free and "home" in free[0].labels["folders"] and free[0].value > 0


def test_skill_as_the_command_line(client, web_home, svc):
    for by in ("lead", "dam", "method"):
        with svc.sessions() as s:
            expected = json.loads(json.dumps(skill_rows(s, by=by)))
        assert client.get("/api/v1/skill", params={"by": by}).json() == expected
    rows = client.get("/api/v1/skill").json()
    assert {r["method"] for r in rows} == {"pysteps", "persistence"} and rows == _cli_json(web_home, "skill")
    # the ensembles' skill, as `nowcast skill --probabilistic`: Brier and reliability per lead and threshold
    prob = client.get("/api/v1/skill", params={"probabilistic": "true"}).json()
    assert prob and prob == _cli_json(web_home, "skill", "--probabilistic")
    assert {r["threshold_mm_h"] for r in prob} >= {1.0, 5.0} and all(0 <= r["brier"] <= 1 for r in prob)
    by_dam = client.get("/api/v1/skill", params={"probabilistic": "true", "by": "dam"}).json()
    assert by_dam == _cli_json(web_home, "skill", "--probabilistic", "--by", "dam") and len({r["dam"] for r in by_dam}) == 7
    csv_text = client.get("/api/v1/skill", params={"probabilistic": "true", "format": "csv"}).text
    header = csv_text.splitlines()[0].split(",")
    assert "brier" in header and "reliability_diagram" not in header and len(csv_text.splitlines()) == len(prob) + 1


def test_metrics_from_the_database(client, svc):
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    with svc.sessions() as s:
        runs = dict(s.execute(select(ForecastRun.method, func.count(ForecastRun.id)).group_by(ForecastRun.method)).all())
        rejected = s.scalar(select(func.count(RejectedFile.id)))
    stored = {smp.labels["method"]: smp.value for smp in families["nowcast_runs_stored"].samples
              if smp.name == "nowcast_runs_stored_total"}
    assert stored == runs
    assert families["nowcast_newest_scan_age_seconds"].samples[0].value > 365 * 86400
    assert families["nowcast_fallback_active"].samples[0].value == 0
    assert sum(smp.value for smp in families["nowcast_files_rejected"].samples) == rejected
    csi = [smp for smp in families["nowcast_verification_csi"].samples]
    assert {smp.labels["method"] for smp in csi} == {"pysteps", "persistence"}
    assert {smp.labels["threshold"] for smp in csi} == {"0.1", "1", "5", "10"}
    assert all(0 <= smp.value <= 1 for smp in csi)
    assert "nowcast_verification_mae_mm_h" in families and "nowcast_webhook_failures" in families
    assert "nowcast_cycle_duration_seconds" in families and len(families["nowcast_alert_level"].samples) == 7


def test_openapi_and_an_offline_docs_page(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/status", "/api/v1/forecasts", "/api/v1/fields/{issue_time}/{lead_png}"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    for page in ("/", "/skill", "/docs"):
        html = client.get(page).text
        assert "http://" not in html and "https://" not in html and "cdn" not in html.lower()
        assert "default-src 'self'" in client.get(page).headers["content-security-policy"]


def test_a_token_guards_every_request(web_home):
    settings = web_home.model_copy(update={"api_token": SecretStr("s3cret")})
    with TestClient(create_app(settings)) as c:
        for path in ("/", "/api/v1/status", "/metrics", "/openapi.json", "/static/app.js", "/docs"):
            r = c.get(path)
            assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"], path
            assert r.json()["error"].startswith("missing or wrong token")
        assert c.get("/api/v1/status", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/v1/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        basic = base64.b64encode(b"operator:s3cret").decode()
        assert c.get("/", headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert c.get("/", headers={"Authorization": "Basic !!"}).status_code == 401
