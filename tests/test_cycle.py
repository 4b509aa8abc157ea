"""The forecast cycle (ingest -> production forecast -> baselines) over real and synthetic scans.

Every test runs on SQLite and on a real PostgreSQL (``db_url``). Production uses
``persistence`` (or ``pysteps``) so no model is needed.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import helpers_frames as hf
import numpy as np
import pytest
from sqlalchemy import select

from nowcast_core.contract import LEAD_MINUTES
from nowcast_core.cycle.service import Service
from nowcast_core.cycle.steps import INPUT_OFFSETS, complete_issue_times
from nowcast_core.dams import dam_rainfall
from nowcast_core.db.queries import export_fields, forecast_rows
from nowcast_core.db.schema import DamRainfall, ForecastRun, FrameRecord, RejectedFile
from nowcast_core.io import FAULT_KINDS, frame_file_name, pixel_to_rain_rate, read_frame
from nowcast_core.io.fields import load_field, quantize
from nowcast_core.models import registry

N_DAMS = 7
ROWS_PER_RUN = N_DAMS * len(LEAD_MINUTES)  # 42


def cycle(svc: Service):
    """One cycle's steps, as the forecast-cycle flow runs them."""
    report = svc.ingest()
    production = svc.forecast(production=True)
    baselines = svc.forecast_baselines()
    return report, production, baselines


def runs(svc: Service, *, production: bool | None = True, method: str | None = None) -> list[ForecastRun]:
    with svc.sessions() as s:
        q = select(ForecastRun).order_by(ForecastRun.id)
        if production is not None:
            q = q.where(ForecastRun.is_production == production)
        if method:
            q = q.where(ForecastRun.method == method)
        out = list(s.scalars(q))
        for r in out:
            r.results  # load
        return out


def scan_times(svc: Service) -> list[datetime]:
    with svc.sessions() as s:
        return sorted(s.scalars(select(FrameRecord.scan_time)))


def assert_whole(svc: Service, run: ForecastRun) -> None:
    """A run has 42 results (7 dams x 6 leads, valid = issue + lead) and all its inputs registered."""
    assert run.status == "ok"
    assert len(run.results) == ROWS_PER_RUN
    assert sorted({r.dam_id for r in run.results}) == sorted(d.id for d in svc.dams)
    assert sorted({r.lead_minutes for r in run.results}) == list(LEAD_MINUTES)
    for r in run.results:
        assert r.valid_time == run.issue_time + timedelta(minutes=r.lead_minutes)
    present = set(scan_times(svc))
    assert all(run.issue_time - dt in present for dt in INPUT_OFFSETS)


def t(k: int) -> datetime:
    return hf.EVENT_START + hf.minutes(k)


# --- one cycle over an event with every fault kind ------------------------------------------


def test_one_cycle_forecasts_every_complete_scan_and_quarantines_every_fault(make_service, shared_radar, tmp_path):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 10)
    times = hf.deliver(files, inbox)
    faults = hf.write_faults(inbox, tmp_path / "unpickled")
    link = inbox / frame_file_name(hf.FAULT_DAY + hf.minutes(30))
    link.symlink_to(files[0])  # a link to a good scan outside the inbox is still never followed
    faults[link.name] = ("symlink", b"")

    report, production, baselines = cycle(svc)

    assert sorted(report.registered) == times
    assert {f: k for f, k, _ in report.rejected} == {n: k for n, (k, _) in faults.items()}
    expected = times[3:]
    assert production.method == "persistence" and production.runs == len(expected) and baselines == []
    stored = runs(svc)
    assert [r.issue_time for r in stored] == expected
    for r in stored:
        assert_whole(svc, r)
        assert (r.method, r.model_version, r.is_production, r.note) == ("persistence", "1", True, "")
    assert runs(svc, production=False) == []

    # a second cycle, with an identical and a conflicting duplicate, adds no run and no scan
    hf.deliver([files[4]], inbox)
    hf.write_file(inbox, files[5].name, files[6].read_bytes())
    report2, production2, _ = cycle(svc)
    assert report2.registered == [] and report2.duplicates == [files[4].name]
    assert [(f, k) for f, k, _ in report2.rejected] == [(files[5].name, "conflicting_duplicate")]
    assert production2.runs == 0
    assert [r.id for r in runs(svc, production=None)] == [r.id for r in stored]
    assert scan_times(svc) == times
    with svc.sessions() as s:
        kinds = set(s.scalars(select(RejectedFile.reason_kind)))
    # every kind but the catch-all and "not a regular file" (reported, never quarantined) got its own reason
    assert kinds == set(FAULT_KINDS) - {"unreadable", "not_regular"}
    assert not (tmp_path / "unpickled").exists()


def test_backlog_is_caught_up_oldest_first(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 12)
    hf.deliver(files[:4], inbox)
    cycle(svc)
    [first] = runs(svc)
    assert first.issue_time == t(3)

    hf.deliver(files[4:], inbox)  # 8 scans at once: a backlog
    _, production, _ = cycle(svc)
    assert production.runs == 8
    stored = runs(svc)
    assert [r.issue_time for r in stored] == [t(k) for k in range(3, 12)]
    ids = [r.id for r in stored]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "run ids increase with issue time"
    started = [r.started_at for r in stored[1:]]
    assert started == sorted(started)


def test_late_and_out_of_order_scans(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 10)
    held_back = files[5]  # needed by the issue times t5 .. t8
    rest = [f for f in files if f is not held_back]
    random.Random(42).shuffle(rest)
    batches = [rest[0:3], rest[3:6], rest[6:9], [held_back]]
    for batch in batches:
        hf.deliver(batch, inbox)
        cycle(svc)
        present = scan_times(svc)
        issued = [r.issue_time for r in runs(svc)]
        assert sorted(issued) == complete_issue_times(present), "every forecast the scans allow, no other"
        assert len(issued) == len(set(issued))
        for r in runs(svc):
            assert_whole(svc, r)
        if batch is not batches[-1]:
            assert not any(r.issue_time - dt == t(5) for r in runs(svc) for dt in INPUT_OFFSETS)
    assert sorted(r.issue_time for r in runs(svc)) == [t(k) for k in range(3, 10)]


def test_late_scan_completes_the_forecasts_it_enables(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 10)
    hf.deliver([f for k, f in enumerate(files) if k != 5], inbox)
    cycle(svc)
    assert [r.issue_time for r in runs(svc)] == [t(3), t(4), t(9)]
    hf.deliver([files[5]], inbox)  # hours late in real life
    _, production, _ = cycle(svc)
    assert production.runs == 4
    assert [r.issue_time for r in runs(svc)] == [t(3), t(4), t(9), t(5), t(6), t(7), t(8)]


def test_gap_gives_no_forecast_that_needs_the_missing_scan(make_service, shared_radar):
    svc = make_service()
    inbox = svc.settings.inbox
    files = hf.event_files(shared_radar, 0, 10)
    hf.deliver(files[:5] + files[6:], inbox)  # t5 missing
    _, production, _ = cycle(svc)
    issued = sorted(r.issue_time for r in runs(svc))
    assert issued == [t(3), t(4), t(9)]
    for it in issued:
        assert t(5) not in {it - dt for dt in INPUT_OFFSETS}
    assert production.runs == 3
    # and a second cycle does not try them again
    assert cycle(svc)[1].runs == 0


# --- synthetic dry and wet scans --------------------------------------------------------------


def _synthetic(svc: Service, values: list[int], start: datetime) -> list[datetime]:
    out = []
    for k, v in enumerate(values):
        st = start + hf.minutes(k)
        hf.write_scan(svc.settings.inbox, st, np.full(hf.GRID, v, np.uint8))
        out.append(st)
    return out


def _rows_by_issue(svc: Service, method: str | None = None) -> dict[datetime, list[DamRainfall]]:
    return {r.issue_time: sorted(r.results, key=lambda x: (x.dam_id, x.lead_minutes))
            for r in runs(svc, production=None, method=method)}


def test_all_wet_scans_give_the_pixels_rain_rate(make_service):
    # A uniform 23 -> 75 mm/h step over the whole grid is no real weather: the default limits flag it
    # (and withhold its alerts, see test_plausibility.py). Here only the arithmetic is tested.
    svc = make_service(baselines=["pysteps"], max_mean_rate_jump_mm_h=100)
    start = datetime(2021, 7, 1, 0, 0, tzinfo=hf.EVENT_START.tzinfo)
    times = _synthetic(svc, [200] * 4 + [230] * 4, start)
    report, production, baselines = cycle(svc)
    assert len(report.registered) == 8 and production.runs == 5 and [b.runs for b in baselines] == [5]
    rate_200 = float(quantize(pixel_to_rain_rate(np.uint8(200))))  # about 22.9 mm/h
    rate_230 = float(quantize(pixel_to_rain_rate(np.uint8(230))))  # about 74.9 mm/h
    assert 20 < rate_200 < 25 and 70 < rate_230 < 80
    with svc.sessions() as s:
        assert {f.wet_fraction for f in s.scalars(select(FrameRecord))} == {1.0}
    for method in ("persistence", "pysteps"):
        rows = _rows_by_issue(svc, method)
        assert sorted(rows) == times[3:]
        for r in rows[times[3]]:  # all four inputs at pixel 200
            assert r.mean_mm_h == pytest.approx(rate_200, abs=0.011)
            assert r.max_mm_h == pytest.approx(rate_200, abs=0.011)
            assert r.dam_pixel_mm_h == pytest.approx(rate_200, abs=0.011)
            assert r.wet_fraction == 1.0
            assert r.depth_mm == pytest.approx(rate_200 * r.lead_minutes / 60, rel=1e-3)
            assert r.alert is None
    # persistence of the last scan: depth at +60 is rate x 1 h exactly
    for r in _rows_by_issue(svc, "persistence")[times[7]]:
        assert r.mean_mm_h == pytest.approx(rate_230, abs=1e-4)
        assert r.depth_mm == pytest.approx(rate_230 * r.lead_minutes / 60, abs=1e-3)
        if r.lead_minutes == 60:
            assert r.depth_mm == pytest.approx(rate_230, abs=1e-3)
        expected = "emergency" if r.depth_mm >= 72 else "watch" if r.depth_mm >= 50 else None
        assert r.alert == expected
    alerts = {r.lead_minutes: r.alert for r in _rows_by_issue(svc, "persistence")[times[7]] if r.dam_id == "dam-1"}
    assert alerts == {10: None, 20: None, 30: None, 40: None, 50: "watch", 60: "emergency"}


def _dry_cycle(make_service):
    svc = make_service(baselines=["pysteps"])
    start = datetime(2021, 7, 2, 0, 0, tzinfo=hf.EVENT_START.tzinfo)
    times = _synthetic(svc, [0] * 5, start)
    _, production, baselines = cycle(svc)
    assert production.runs == 2 and [b.runs for b in baselines] == [2]
    return svc, times


def test_all_dry_scans_no_crash_no_rain_no_alert(make_service):
    """All-zero pixels (no echo anywhere): no crash, nothing wet, no alert, for both methods."""
    svc, times = _dry_cycle(make_service)
    with svc.sessions() as s:
        assert {f.wet_fraction for f in s.scalars(select(FrameRecord))} == {0.0}
    for method in ("persistence", "pysteps"):
        rows = _rows_by_issue(svc, method)
        assert sorted(rows) == times[3:]
        for rs in rows.values():
            assert len(rs) == ROWS_PER_RUN
            for r in rs:
                assert r.alert is None and r.wet_fraction == 0.0
                assert 0.0 <= r.mean_mm_h <= r.max_mm_h < 0.1 and r.depth_mm < 0.1


def test_all_dry_scans_give_exact_zeros(make_service):
    """Pixel 0 is "no echo" (the sample generator writes rain-free pixels as 0), so a scan with
    no echo anywhere must forecast 0 mm/h, not the 0.0085 mm/h of -10 dBZ rounded up to 0.01."""
    svc, _ = _dry_cycle(make_service)
    for method in ("persistence", "pysteps"):
        for rs in _rows_by_issue(svc, method).values():
            for r in rs:
                assert (r.mean_mm_h, r.max_mm_h, r.depth_mm, r.dam_pixel_mm_h) == (0.0, 0.0, 0.0, 0.0), \
                    f"{method}: a scan with no echo gives {r.mean_mm_h} mm/h at {r.dam_id} +{r.lead_minutes}"


# --- the max_scan_age rule -----------------------------------------------------------------


def test_scans_older_than_max_age_behind_newest_scan_are_skipped(make_service, shared_radar):
    svc = make_service(max_scan_age_h=0.5)
    files = hf.event_files(shared_radar, 0, 12)  # t0 .. t11, from 2010
    hf.deliver(files[:2] + files[3:], svc.settings.inbox)  # t2 comes later
    _, production, _ = cycle(svc)
    # measured from the newest scan (t11), not the wall clock (16 years later): t8 .. t11 are forecast,
    # t6 and t7 are complete but too old
    assert [r.issue_time for r in runs(svc)] == [t(8), t(9), t(10), t(11)]
    assert production.too_old == 2 and production.runs == 4
    # a late old scan completes t3 .. t5, but they are too old as well
    hf.deliver([files[2]], svc.settings.inbox)
    _, production, _ = cycle(svc)
    assert production.runs == 0 and production.too_old == 5
    assert len(runs(svc)) == 4


def test_max_age_applies_to_baselines_too(make_service, shared_radar):
    svc = make_service(max_scan_age_h=0.5, baselines=["pysteps"])
    hf.deliver(hf.event_files(shared_radar, 0, 9), svc.settings.inbox)
    _, production, [baseline] = cycle(svc)
    assert baseline.method == "pysteps" and baseline.too_old == production.too_old == 2
    assert [r.issue_time for r in runs(svc, production=False)] == [t(5), t(6), t(7), t(8)]


# --- stored fields -------------------------------------------------------------------------


def test_stored_field_round_trips_through_query_and_export(make_service, shared_radar):
    svc = make_service()
    files = hf.event_files(shared_radar, 20, 6)
    hf.deliver(files, svc.settings.inbox)
    cycle(svc)
    stored = runs(svc)
    assert len(stored) == 3
    with svc.sessions() as s:
        iso, exported, missing = export_fields(s, svc.settings.forecasts)
        rows = forecast_rows(s, since=stored[0].issue_time)
    assert iso == [r.issue_time.isoformat().replace("+00:00", "Z") for r in stored]
    assert exported.dtype == np.float32 and exported.shape == (3, 6, 120, 120)
    for k, run in enumerate(stored):
        field = load_field(svc.settings.forecasts, run.field_path, run.field_checksum)
        assert field.dtype == np.float32 and field.shape == (6, 120, 120)
        np.testing.assert_array_equal(field, exported[k])
        # persistence: every lead is the issue-time scan's rain rate at the stored resolution
        last = read_frame(files[3 + k])
        np.testing.assert_allclose(field, np.repeat(quantize(pixel_to_rain_rate(last.frame))[None], 6, 0), atol=1e-6)
        # the dam results are those of the stored field
        recomputed = {(d["dam_id"], d["lead_minutes"]): d for d in dam_rainfall(field, svc.dams)}
        mine = [x for x in rows if x["issue_time"] == iso[k]]
        assert len(mine) == ROWS_PER_RUN
        for x in mine:
            ref = recomputed[(x["dam"], x["lead_minutes"])]
            for key in ("mean_mm_h", "max_mm_h", "depth_mm", "wet_fraction", "dam_pixel_mm_h"):
                assert x[key] == pytest.approx(ref[key], abs=1e-4), key
            assert x["alert"] == ref["alert"]
    # a damaged field file is detected, not silently read
    path = svc.settings.forecasts / stored[0].field_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_field(svc.settings.forecasts, stored[0].field_path, stored[0].field_checksum)


# --- baselines -----------------------------------------------------------------------------


def test_baselines_are_stored_beside_production_not_as_it(make_service, shared_radar):
    svc = make_service(method="pysteps", baselines=["persistence", "pysteps"])
    hf.deliver(hf.event_files(shared_radar, 10, 7), svc.settings.inbox)
    _, production, baselines = cycle(svc)
    assert production.method == "pysteps" and production.runs == 4
    assert [(b.method, b.runs) for b in baselines] == [("persistence", 4)]  # pysteps is production: not twice
    prod, base = runs(svc, production=True), runs(svc, production=False)
    assert {r.method for r in prod} == {"pysteps"} and {r.method for r in base} == {"persistence"}
    assert [r.issue_time for r in prod] == [r.issue_time for r in base]
    for r in prod + base:
        assert_whole(svc, r)
    with svc.sessions() as s:
        persistence_rows = forecast_rows(s, since=t(10), method="persistence")
        production_rows = forecast_rows(s, since=t(10))
        latest = forecast_rows(s)
    assert len(persistence_rows) == len(production_rows) == 4 * ROWS_PER_RUN
    assert {x["method"] for x in persistence_rows} == {"persistence"}
    assert {x["method"] for x in production_rows} == {"pysteps"}
    assert {x["issue_time"] for x in latest} == {"2010-08-26T02:40:00Z"} and len(latest) == ROWS_PER_RUN
    status = svc.status()
    assert (status["production_runs"], status["forecast_runs"]) == (4, 8)
    assert status["method_in_use"] == "pysteps" and status["fallback_reason"] is None
    # a second cycle adds nothing, for production nor baselines
    _, p2, b2 = cycle(svc)
    assert p2.runs == 0 and [b.runs for b in b2] == [0]


# --- model fallback ------------------------------------------------------------------------


def _junk_champion(svc: Service, path: Path) -> None:
    path.write_bytes(b"not a keras model " * 100)
    with svc.sessions() as s:
        record = registry.register_model(s, path, home=svc.settings.home, reason="test model")
        registry.promote(s, record, "test champion")
        s.commit()


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_broken_registered_model_falls_back_to_pysteps_with_reason(make_service, shared_radar, tmp_path, damage):
    svc = make_service(method=None, baselines=["persistence", "pysteps"])
    model = tmp_path / "champion.keras"
    _junk_champion(svc, model)
    if damage == "corrupt":
        with open(model, "ab") as fh:
            fh.write(b"bit rot")
    else:
        model.unlink()
    hf.deliver(hf.event_files(shared_radar, 10, 6), svc.settings.inbox)
    _, production, baselines = cycle(svc)
    assert production.method == "pysteps" and production.runs == 3
    assert damage in production.note and "pysteps fallback" in production.note
    assert [(b.method, b.runs) for b in baselines] == [("persistence", 3)]
    prod = runs(svc)
    assert len(prod) == 3
    for r in prod:
        assert r.method == "pysteps" and r.is_production
        assert damage in r.note and str(model) in r.note and "pysteps fallback" in r.note
        assert_whole(svc, r)
    status = svc.status()
    assert status["method_in_use"] == "pysteps"
    assert damage in status["fallback_reason"] and damage in status["last_forecast_note"]


def test_fallback_note_follows_the_current_problem(make_service, shared_radar, tmp_path):
    """The long-lived service (the daemon's) must record the reason that holds now:
    a model first corrupt, then missing, gives runs that say 'corrupt', then 'missing'."""
    svc = make_service(method=None, baselines=[])
    model = tmp_path / "champion.keras"
    _junk_champion(svc, model)
    with open(model, "ab") as fh:
        fh.write(b"bit rot")
    files = hf.event_files(shared_radar, 10, 6)
    hf.deliver(files[:4], svc.settings.inbox)
    assert "corrupt" in cycle(svc)[1].note
    model.unlink()
    hf.deliver(files[4:], svc.settings.inbox)
    _, production, _ = cycle(svc)
    assert production.runs == 2
    assert "missing" in svc.status()["fallback_reason"]
    notes = [r.note for r in runs(svc)]
    assert "corrupt" in notes[0]
    assert all("missing" in n for n in notes[1:]), notes
