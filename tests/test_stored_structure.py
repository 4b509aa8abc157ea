"""Stored structure verification (FSS sums, area at 5 mm/h per run and lead, migration 0007):
equal to :mod:`nowcast_core.verification.structure` on the same arrays, pooled exactly over
periods, absent (not zero) for rows verified before the migration."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from nowcast_app import cli
from nowcast_app.cli import app as cli_app

from nowcast_core.db import downgrade, make_engine, upgrade
from nowcast_core.db.schema import Contingency, ForecastRun, FssSums, LeadVerification
from nowcast_core.io import pixel_to_rain_rate, read_folder
from nowcast_core.io.fields import load_field
from nowcast_core.verification.stored import STRUCTURE_KEYS, skill_rows, structure_pools
from nowcast_core.verification.structure import StructureSums, fss_key, structure_sums

#: knmi-w0 scans 22..29 (03:40 .. 04:50 UTC): heavy rain (hundreds of pixels >= 5 mm/h).
FIRST, LAST = 22, 30


def _sums_close(a: StructureSums, b: StructureSums) -> None:
    assert a.n_forecasts == b.n_forecasts
    assert a.area_forecast_px == b.area_forecast_px
    assert a.area_observed_px == b.area_observed_px
    assert set(a.fss_sums) == set(b.fss_sums)
    for key, sums in a.fss_sums.items():
        assert sums == pytest.approx(b.fss_sums[key], rel=1e-9, abs=1e-9), key


def _verify(svc, shared_radar):
    """Forecast (persistence) and verify 8 scans of heavy rain; the direct structure sums per
    (issue time, lead) from the stored fields and the scan files."""
    folder = shared_radar / "knmi-w0"
    for path in sorted(folder.glob("RDR_*.npz"))[FIRST:LAST]:
        shutil.copy(path, svc.settings.inbox / path.name)
    svc.ingest()
    svc.forecast(production=True)
    assert svc.verify() > 0
    observed = {f.scan_time: pixel_to_rain_rate(f.frame).astype(np.float64)
                for f in read_folder(folder)[FIRST:LAST]}
    direct: dict[tuple[datetime, int], StructureSums] = {}
    with svc.sessions() as session:
        for run in session.scalars(select(ForecastRun)):
            field = load_field(svc.settings.forecasts, run.field_path, run.field_checksum)
            for lv in session.scalars(select(LeadVerification).where(LeadVerification.run_id == run.id)):
                k = lv.lead_minutes // 10 - 1
                direct[run.issue_time, lv.lead_minutes] = structure_sums(field[k], observed[lv.valid_time])
    assert len(direct) == 10  # issue times at scans 3..6 of 8: 4 + 3 + 2 + 1 verified leads
    return svc, direct


@pytest.fixture
def verified(make_service, shared_radar):
    """On SQLite and PostgreSQL."""
    return _verify(make_service(ensembles=False), shared_radar)  # deterministic verification only


@pytest.fixture
def verified_sqlite(make_sqlite_service, shared_radar):
    return _verify(make_sqlite_service(ensembles=False), shared_radar)


def _pool(sums) -> StructureSums:
    total = StructureSums()
    for s in sums:
        total.add(s)
    return total


def test_stored_structure_equals_direct_computation(verified):
    svc, direct = verified
    assert any(s.area_observed_px > 100 and s.area_forecast_px > 100 for s in direct.values())
    with svc.sessions() as session:
        pools = structure_pools(session, by="lead")
        rows = {r["lead_minutes"]: r for r in skill_rows(session, by="lead")}
        stored_rows = session.scalars(select(FssSums)).all()
        by_dam = skill_rows(session, by="dam")
    assert len(stored_rows) == 6 * len(direct)  # 2 thresholds x 3 windows per (run, lead)
    for lead in (10, 20, 30, 40):
        expected = _pool(s for (_, ld), s in direct.items() if ld == lead)
        _sums_close(pools["persistence", lead], expected)
        row = rows[lead]
        assert row["n_structure_forecasts"] == row["n_forecasts"] == expected.n_forecasts
        summary = expected.summary(digits=4)
        assert {k: row[k] for k in STRUCTURE_KEYS} == {k: summary[k] for k in STRUCTURE_KEYS}
        assert row["fss_5_5km"] is not None and 0 <= row["fss_5_5km"] <= 1
        assert row["csi_5"] is not None and "csi_10" in row
    # Persistence loses structure with lead.
    assert rows[10]["fss_5_5km"] > rows[40]["fss_5_5km"]
    # By dam: no structure scores (they are over the whole field, not a catchment).
    assert by_dam and not any(k in r for r in by_dam for k in (*STRUCTURE_KEYS, "n_structure_forecasts"))


def test_pooling_two_periods_equals_the_union(verified_sqlite):
    svc, direct = verified_sqlite
    issue_times = sorted({t for t, _ in direct})
    cut = issue_times[1]
    with svc.sessions() as session:
        early = structure_pools(session, until=cut, by="method")["persistence",]
        late = structure_pools(session, since=cut + timedelta(seconds=1), by="method")["persistence",]
        union = structure_pools(session, by="method")["persistence",]
        by_method = skill_rows(session, by="method")[0]
    _sums_close(early, _pool(s for (t, _), s in direct.items() if t <= cut))
    pooled = StructureSums(fss_sums={})
    pooled.add(early)
    pooled.add(late)
    _sums_close(pooled, union)
    _sums_close(union, _pool(direct.values()))
    assert 0 < early.n_forecasts < union.n_forecasts
    assert by_method["n_structure_forecasts"] == len(direct)
    assert by_method["area_5_observed_px"] == sum(s.area_observed_px for s in direct.values())
    assert by_method["area_ratio_5"] == pytest.approx(union.area_ratio, abs=1e-4)


def test_skill_command_shows_structure(verified_sqlite, monkeypatch):
    svc, _ = verified_sqlite
    env = {"NOWCAST_HOME": str(svc.settings.home), "NOWCAST_DATABASE_URL": svc.settings.database_url}
    result = CliRunner().invoke(cli_app, ["skill", "--by", "method", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    with svc.sessions() as session:
        assert json.loads(result.stdout) == json.loads(json.dumps(skill_rows(session, by="method")))
    tables = []
    monkeypatch.setattr(cli, "render", lambda rows, fmt, **kw: tables.append(rows))
    result = CliRunner().invoke(cli_app, ["skill"], env=env)
    assert result.exit_code == 0, result.output
    columns = list(tables[0][0])
    assert {"n_forecasts", "mae_mm_h", "csi_1", "pod_1", "far_10", "csi_5", "csi_10", "n_structure_forecasts",
            "fss_5_5km", "fss_5_15km", "area_ratio_5"} <= set(columns)
    assert tables[0][0]["fss_5_5km"] is not None


T0 = datetime(2024, 1, 15, 3, 30, tzinfo=UTC)


def test_migration_0007_on_rows_verified_before_it(db_url):
    """Rows verified before 0007 keep no structure sums: skill reports them as absent, not zero;
    the downgrade drops only what 0007 added."""
    upgrade(db_url, "0005")
    eng = make_engine(db_url)
    meta = sa.MetaData()
    meta.reflect(eng)
    runs, lv, cont = meta.tables["forecast_runs"], meta.tables["lead_verification"], meta.tables["contingency"]
    with eng.begin() as conn:
        run_id = conn.execute(runs.insert().values(
            issue_time=T0.replace(tzinfo=None), method="persistence", model_version="v1", is_production=True,
            status="ok", note="", started_at=T0.replace(tzinfo=None), finished_at=T0.replace(tzinfo=None),
            forecast_seconds=1.0).returning(runs.c.id)).scalar_one()
        lv_id = conn.execute(lv.insert().values(
            run_id=run_id, lead_minutes=10, valid_time=(T0 + timedelta(minutes=10)).replace(tzinfo=None),
            n_pixels=4, abs_error_sum=2.0, verified_at=T0.replace(tzinfo=None)).returning(lv.c.id)).scalar_one()
        conn.execute(cont.insert().values(verification_id=lv_id, threshold_mm_h=5.0, hits=1, misses=1,
                                          false_alarms=0, correct_negatives=2))
    eng.dispose()

    upgrade(db_url)
    eng = make_engine(db_url)
    try:
        from sqlalchemy.orm import Session

        with Session(eng) as s:
            old = s.get(LeadVerification, lv_id)
            assert old.area_forecast_px is None and old.area_observed_px is None and not old.has_structure
            assert s.scalars(select(FssSums)).all() == []
            row = skill_rows(s, by="lead")[0]
            assert row["n_forecasts"] == 1 and row["n_structure_forecasts"] == 0
            assert row["csi_5"] == pytest.approx(0.5)
            assert all(row[k] is None for k in STRUCTURE_KEYS)  # absent, not 0
            assert structure_pools(s) == {}

            # A later (run, lead) carries the sums: the pool's structure rests on it alone.
            forecast = np.zeros((20, 20))
            observed = np.zeros((20, 20))
            forecast[5:10, 5:10] = 6.0
            observed[6:11, 7:12] = 6.0
            sums = structure_sums(forecast, observed)
            run2 = ForecastRun(issue_time=T0 + timedelta(minutes=10), method="persistence", model_version="v1",
                               started_at=T0, finished_at=T0, forecast_seconds=1.0)
            s.add(run2)
            s.flush()
            s.add(LeadVerification(run_id=run2.id, lead_minutes=10, valid_time=T0 + timedelta(minutes=20),
                                   n_pixels=400, abs_error_sum=1.0, area_forecast_px=sums.area_forecast_px,
                                   area_observed_px=sums.area_observed_px,
                                   contingency=[Contingency(threshold_mm_h=5.0, hits=0, misses=0, false_alarms=0,
                                                            correct_negatives=400)],
                                   fss_sums=[FssSums(threshold_mm_h=t, window_km=w, **v)
                                             for (t, w), v in sums.fss_sums.items()]))
            s.commit()
            row = skill_rows(s, by="lead")[0]
            assert row["n_forecasts"] == 2 and row["n_structure_forecasts"] == 1
            assert row[fss_key(5, 5)] == pytest.approx(sums.fss(5.0, 5), abs=1e-4)
            assert row["area_5_forecast_px"] == row["area_5_observed_px"] == 25
            assert row["area_ratio_5"] == 1.0
    finally:
        eng.dispose()

    downgrade(db_url, "0005")
    eng = make_engine(db_url)
    try:
        insp = inspect(eng)
        assert "fss_sums" not in insp.get_table_names()
        assert {c["name"] for c in insp.get_columns("lead_verification")} == {
            "id", "run_id", "lead_minutes", "valid_time", "n_pixels", "abs_error_sum", "verified_at"}
        with eng.connect() as conn:  # nothing else lost (SQLite batch mode copies the table)
            assert conn.execute(sa.text("SELECT count(*) FROM lead_verification")).scalar_one() == 2
            assert conn.execute(sa.text("SELECT count(*) FROM contingency")).scalar_one() == 2
    finally:
        eng.dispose()
    upgrade(db_url)
