"""The dashboard in a real headless Chromium (the operating system's package, driven by Playwright).

Skipped when Chromium or Playwright is missing on a workstation; a failure when CI is set
(.ci/run installs Chromium). Screenshots go to the test's tmp folder, and also to
$DASHBOARD_SCREENSHOTS when set, to be looked at.
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import _unavailable
from sqlalchemy import func, select

from nowcast_app.web.server import WebThread
from nowcast_core.cycle.service import Service
from nowcast_core.db.schema import FrameRecord

FRAME_MS = 300


def _fixed(x: float, digits: int) -> str:
    """JavaScript's ``Number.toFixed``: the exact value rounded half up (Python's format rounds half to even)."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    _unavailable("no Chromium on the PATH (Debian: apt-get install chromium)")


class Clock:
    """The web application's clock, moved by the test."""

    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def _newest_scan(settings):
    svc = Service(settings)
    with svc.sessions() as s:
        newest = s.scalar(select(func.max(FrameRecord.scan_time)))
    svc.close()
    return newest


@contextmanager
def _served(settings, clock: Clock):
    """The web application of ``settings`` on a free loopback port, with ``clock``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    web = WebThread(settings, "127.0.0.1", port, clock=clock)
    assert web.start()
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture(scope="module")
def site(web_home):
    newest = _newest_scan(web_home)
    clock = Clock(newest + timedelta(minutes=5))
    with _served(web_home, clock) as web:
        yield web.url, clock, newest


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    path = _chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _wait_image(page, timeout_s: float = 20.0) -> None:
    """Until the map image has loaded (polled from here: the page's CSP forbids eval)."""
    for _ in range(int(timeout_s * 10)):
        if page.locator("#map").evaluate("e => e.complete && e.naturalWidth > 0"):
            return
        page.wait_for_timeout(100)
    raise AssertionError("the map image did not load")


def _shot(page, tmp_path: Path, name: str, **kw) -> Path:
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out), **kw)
    if extra := os.environ.get("DASHBOARD_SCREENSHOTS"):
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(extra) / out.name)
    assert out.stat().st_size > 20_000  # a real picture, not a blank page
    return out


def _open(browser, url: str, **viewport):
    page = browser.new_page(viewport=viewport or {"width": 1920, "height": 1080})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: None if r.url.startswith((url, "data:")) else problems.append(f"off-site: {r.url}"))
    return page, problems


def test_dashboard_shows_every_dam_with_the_apis_numbers(browser, site, tmp_path):
    url, clock, newest = site
    clock.t = newest + timedelta(minutes=5)
    page, problems = _open(browser, url)
    page.goto(f"{url}?frame_ms={FRAME_MS}&poll=1")
    page.wait_for_selector("body[data-loaded=true]")
    _wait_image(page)
    api = page.request
    rows = {r["dam"]: r for r in api.get(f"{url}api/v1/forecasts?lead_minutes=60").json()}
    hour = {dam: r["depth_mm"] for dam, r in rows.items()}
    alerts = {a["dam"]: a for a in api.get(f"{url}api/v1/alerts").json()}
    levels = {dam: a["level"] for dam, a in alerts.items()}
    cards = page.locator("article.card")
    assert cards.count() == 7
    for k in range(1, 8):
        dam = f"dam-{k}"
        card = page.locator(f"article.card[data-dam='{dam}']")
        assert card.locator("h3").inner_text() == dam
        assert card.locator(".next-hour").inner_text() == f"{hour[dam]:.2f}"
        facts = card.locator(".facts").inner_text()  # how sure: the ensemble's median, 90th percentile, P(>= x mm)
        assert f"p50 {_fixed(rows[dam]['accum_mm_p50'], 1)} mm" in facts
        assert f"p90 {_fixed(rows[dam]['accum_mm_p90'], 1)} mm" in facts
        for thr, p in rows[dam]["prob_accum_ge"].items():
            assert f"P(≥{thr} mm) {_fixed(100 * p, 0)} %" in facts
        assert (f"ensemble 10–90 % {_fixed(rows[dam]['accum_mm_p10'], 1)}–{_fixed(rows[dam]['accum_mm_p90'], 1)} mm"
                in facts)
        gap = f"observed 2 h from {alerts[dam]['observed_scans']} of 12 scans"
        assert (gap in facts) == (alerts[dam]["observed_scans"] < 12), facts  # a feed gap is said, only then
        for fact in card.locator(".facts .fact").all():  # a value never wraps away from its label
            assert fact.evaluate("e => e.getClientRects().length") == 1, fact.inner_text()
        assert card.locator(".badge").get_attribute("data-level") == levels[dam]
        why = card.locator("details.reason")  # how sure the level is, and why
        assert why.locator("summary").inner_text() == (f"P(alert rule) {_fixed(alerts[dam]['probability'], 2)} · "
                                                       f"raised at ≥ 0.50")
        assert why.get_attribute("open") is None if levels[dam] == "none" else why.get_attribute("open") is not None
        if levels[dam] == "none":
            why.locator("summary").click()
        assert alerts[dam]["reason"] in why.inner_text()
        if levels[dam] == "none":
            why.locator("summary").click()  # closed again, as the operator finds it
        assert card.locator("svg.spark rect.obsbar").count() == 18  # 3 h of observed scans
        assert card.locator("svg.spark polyline.fcline").count() == 1
        labels = card.locator("svg.spark text").all_text_contents()
        assert any(t.endswith(" UTC") for t in labels) and any(t.endswith(" issue") for t in labels), labels
        assert "catchment-mean rain rate" in card.locator("svg.spark title").text_content()
    banner = page.locator("#banner")
    assert banner.get_attribute("data-stale") == "false" and "method pysteps" in banner.inner_text()
    assert "ok" in banner.get_attribute("class")
    assert "probability of its rule reaches 0.5" in page.locator("#rules").inner_text()
    assert page.locator("#stale-note").is_hidden()
    assert page.locator("#frame-label").inner_text().count(" UTC") == 1
    legend = page.locator("#legend").inner_text()
    assert legend.startswith("dry") and "no data" in legend  # an outage never reads as dry weather
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, tmp_path, "dashboard-wide")
    assert problems == []
    page.close()


def test_animation_plays_pauses_and_follows_the_slider(browser, site):
    url, clock, newest = site
    page, problems = _open(browser, url)
    page.goto(f"{url}?frame_ms={FRAME_MS}&poll=5")
    page.wait_for_selector("body[data-loaded=true]")
    img = page.locator("#map")
    seen = set()
    for _ in range(8):
        seen.add((img.get_attribute("data-index"), img.get_attribute("src")))
        page.wait_for_timeout(FRAME_MS)
    assert len(seen) >= 4  # the frames advance by themselves
    assert any("/api/v1/scans/" in src for _, src in seen) or any("/fields/" in src for _, src in seen)
    page.click("#play")  # pause
    assert page.locator("#play").get_attribute("data-playing") == "false"
    still = img.get_attribute("data-index")
    page.wait_for_timeout(3 * FRAME_MS)
    assert img.get_attribute("data-index") == still
    page.locator("#slider").fill("11")  # the last frame: +60 min
    assert img.get_attribute("data-index") == "11" and img.get_attribute("src").endswith("/60.png")
    assert "forecast +60 min" in page.locator("#frame-label").inner_text()
    page.locator("#slider").fill("0")
    assert "/api/v1/scans/" in img.get_attribute("src") and "observed" in page.locator("#frame-label").inner_text()
    _wait_image(page)
    assert problems == []
    page.close()


def test_banner_turns_red_when_scans_stop_arriving(browser, site, tmp_path):
    url, clock, newest = site
    clock.t = newest + timedelta(minutes=5)
    page, problems = _open(browser, url)
    page.goto(f"{url}?poll=1")
    page.wait_for_selector("#banner[data-stale=false]")
    green = page.eval_on_selector("#banner", "e => getComputedStyle(e).backgroundColor")
    clock.t = newest + timedelta(minutes=45)  # no scan for 45 min (limit 20)
    page.wait_for_selector("#banner[data-stale=true]", timeout=15_000)
    red = page.eval_on_selector("#banner", "e => getComputedStyle(e).backgroundColor")
    assert red != green and red == "rgb(179, 38, 30)"
    assert "NO NEW SCAN FOR 45 min" in page.locator("#banner").inner_text()
    page.wait_for_selector("#stale-note:not([hidden])")  # the cards are greyed and say the forecast is old
    assert page.locator("#stale-note").inner_text().startswith("STALE: no scan for 45 min")
    assert page.eval_on_selector("article.card", "e => getComputedStyle(e).opacity") == "0.55"
    _shot(page, tmp_path, "dashboard-stale")
    clock.t = newest + timedelta(minutes=5)
    assert problems == []
    page.close()


def test_banner_warns_when_a_disk_runs_low(browser, site, web_home, tmp_path):
    """(The API test shows the other side: with room on the disk, no warning.)"""
    _, _, newest = site
    low = web_home.model_copy(update={"min_free_disk_gb": 1e9})  # more than any disk has: always low
    with _served(low, Clock(newest + timedelta(minutes=5))) as web:
        page, problems = _open(browser, web.url)
        page.goto(web.url)
        page.wait_for_selector("#banner[data-disk-low=true]")
        text = page.locator("#banner").inner_text()
        assert text.startswith("LOW DISK: ") and "GB free for home, inbox" in text and "(limit 1000000000 GB)" in text
        assert page.eval_on_selector("#banner", "e => e.className") == "banner warn"
        _shot(page, tmp_path, "dashboard-low-disk")
        assert problems == []
        page.close()


def test_banner_says_when_the_forecast_cycle_keeps_failing_and_the_inbox_is_gone(browser, make_sqlite_service, tmp_path):
    svc = make_sqlite_service()
    svc.record_cycle_failure(OSError(28, "No space left on device"))
    shutil.rmtree(svc.settings.inbox)  # and the inbox deleted: scans cannot arrive
    with _served(svc.settings, Clock(datetime.now(UTC))) as web:
        page, problems = _open(browser, web.url)
        page.goto(web.url)
        page.wait_for_selector("#banner[data-cycle-failures='1']")
        text = page.locator("#banner").inner_text()
        assert "FORECAST CYCLE FAILING (1 in a row): " in text and "No space left on device" in text, text
        assert "INBOX FOLDER MISSING: scans cannot arrive" in text, text
        assert page.eval_on_selector("#banner", "e => e.className") in ("banner warn", "banner stale")
        _shot(page, tmp_path, "dashboard-cycle-failing")
        assert problems == []
        page.close()


def test_a_database_outage_is_said_as_the_servers_reason_not_as_an_unreachable_server(browser, make_sqlite_service,
                                                                                       tmp_path):
    from nowcast_core.db.engine import sqlite_file

    svc = make_sqlite_service()
    db = sqlite_file(svc.settings.database_url)
    with _served(svc.settings, Clock(datetime.now(UTC))) as web:
        db.rename(tmp_path / "away.db")  # moved away under the running server
        try:
            page, problems = _open(browser, web.url)
            page.goto(web.url)
            page.wait_for_function("document.getElementById('banner').textContent.includes('SERVER ERROR')")
            text = page.locator("#banner").inner_text()
            assert text.startswith("SERVER ERROR: the database is unavailable: unable to open database file"), text
            assert "cannot reach the server" not in text
            _shot(page, tmp_path, "dashboard-database-down")
            # the browser reports the 503 responses themselves; nothing else went wrong
            assert all("503" in p for p in problems), problems
            page.close()
        finally:
            (tmp_path / "away.db").rename(db)


def test_phone_layout_and_skill_page(browser, site, tmp_path):
    url, clock, newest = site
    page, problems = _open(browser, url, width=390, height=844)
    page.goto(url)
    page.wait_for_selector("body[data-loaded=true]")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390  # nothing wider than the phone
    assert page.locator("article.card").count() == 7
    # the answer first: the first dam's next hour is on the first screen, the map below the cards
    assert page.locator("article.card .next-hour").first.bounding_box()["y"] < 844 / 2
    assert page.locator("#map").bounding_box()["y"] > page.locator("article.card").last.bounding_box()["y"]
    _shot(page, tmp_path, "dashboard-phone", full_page=True)
    page.wait_for_load_state("networkidle")  # the preloaded frames, before leaving the page
    page.goto(f"{url}skill")
    page.wait_for_selector("#skill tbody tr[data-method]")
    skill = page.request.get(f"{url}api/v1/skill").json()
    rows = page.locator("#skill tbody tr[data-method]")
    assert rows.count() == len(skill)
    first = rows.first.locator("td").all_inner_texts()
    assert first[0] == skill[0]["method"] and first[3] == f"{skill[0]['csi_0.1']:.3f}"
    assert page.locator("#chart-csi polyline").count() == len({r["method"] for r in skill})
    for chart in ("#chart-csi", "#chart-mae"):  # y labels 0, half the top, the top: each readable as itself
        zero, half, top = (float(t) for t in page.locator(f"{chart} text.axis").all_text_contents()[:3])
        assert zero == 0 and top > 0 and abs(2 * half - top) <= 0.05 * top, (chart, half, top)
    # small values (a dry day's MAE) keep two significant digits: the top is 1.1 x the largest value
    labels = page.evaluate("""() => [...NC.lineChart([{name: "m", colour: "#fff", points: [[10, 0.021], [60, 0.042]]}])
        .querySelectorAll("text.axis")].slice(0, 3).map(t => t.textContent)""")
    assert labels == ["0", "0.023", "0.046"]
    # how sure, and per dam: the ensembles' Brier score and each dam's catchment error, as the API has them
    page.wait_for_selector("#dam-skill tbody tr[data-dam]")
    prob = page.request.get(f"{url}api/v1/skill?probabilistic=true").json()
    rows = page.locator("#prob-skill tbody tr[data-lead]")  # one per method and lead, the thresholds side by side
    assert prob and rows.count() == len({(r["method"], r["lead_minutes"]) for r in prob})
    first = {r["threshold_mm_h"]: r for r in prob if (r["method"], r["lead_minutes"]) == (prob[0]["method"], prob[0]["lead_minutes"])}
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[:3] == [prob[0]["method"], str(prob[0]["lead_minutes"]), str(first[5.0]["n_runs"])]
    # where nothing reached the threshold, a small Brier score is no skill: the cell says so
    assert cells[3:6] == [_fixed(first[t]["brier"], 4) if first[t]["brier_uncertainty"] > 0 else "none fell"
                          for t in (1.0, 5.0, 10.0)]
    assert "none fell" not in cells[3]  # 1 mm/h fell in this event
    fell_5 = [r for r in prob if r["threshold_mm_h"] == 5.0 and r["brier_uncertainty"] > 0]
    assert page.locator("#chart-brier polyline").count() == (len({r["method"] for r in prob}) if fell_5 else 0)
    dams = page.request.get(f"{url}api/v1/skill?by=dam").json()
    ensemble_dams = page.request.get(f"{url}api/v1/skill?by=dam&probabilistic=true").json()
    assert page.locator("#dam-skill tbody tr[data-dam]").count() == len(dams) + len(ensemble_dams)
    crps = page.locator(f"#dam-skill tbody tr[data-dam='{ensemble_dams[0]['dam']}'][data-method='{ensemble_dams[0]['method']}'] td")
    assert crps.last.inner_text() == _fixed(ensemble_dams[0]["crps_accum_mm"], 2)
    assert len({d for d in page.locator("#dam-skill tbody tr[data-dam]").evaluate_all(
        "rows => rows.map(r => r.dataset.dam)")}) == 7
    _shot(page, tmp_path, "skill-phone", full_page=True)
    page.goto(f"{url}docs")
    page.wait_for_selector(".endpoint")
    assert page.locator(".endpoint").count() >= 8
    assert problems == []
    page.close()


def test_a_feed_gap_is_said_on_the_cards(browser, shared_radar, tmp_path):
    """A scan missing in the 2 hours before the issue time counts as dry in "observed 2 h": the card says
    from how many of the 12 scans it was summed."""
    from nowcast_core.config import load_settings

    settings = load_settings(home=tmp_path / "home", settle_seconds=0, method="persistence", baselines=[],
                             reference_ensemble="", ensemble_members=6, min_free_disk_gb=0)
    svc = Service(settings)
    svc.migrate()
    scans = sorted((shared_radar / "knmi-w0").glob("RDR_*.npz"))[14:30]
    for path in scans[:8] + scans[9:]:  # the 9th is missing: 11 of the newest run's 12
        shutil.copy(path, settings.inbox / path.name)
    svc.ingest()
    svc.forecast(production=True)
    svc.close()
    with _served(settings, Clock(_newest_scan(settings) + timedelta(minutes=5))) as web:
        page, problems = _open(browser, web.url)
        page.goto(web.url)
        page.wait_for_selector("body[data-loaded=true]")
        alerts = page.request.get(f"{web.url}api/v1/alerts").json()
        assert {a["observed_scans"] for a in alerts} == {11}
        facts = page.locator("article.card[data-dam='dam-1'] .facts").inner_text()
        assert "observed 2 h from 11 of 12 scans (missing ones count as dry)" in facts
        page.wait_for_load_state("networkidle")
        assert problems == []
        page.close()
