"""The Alembic migrations against the models, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from nowcast_core.db import downgrade, make_engine, upgrade
from nowcast_core.db.migrate import alembic_config, current_revision
from nowcast_core.db.schema import (
    Base,
    DamRainfall,
    ForecastRun,
    FrameRecord,
    ModelRecord,
    RejectedFile,
)

T0 = datetime(2024, 1, 15, 3, 30, tzinfo=UTC)
VERSION_TABLE = "alembic_version"


@pytest.fixture
def engine(db_url):
    """An engine on a database migrated to head."""
    upgrade(db_url)
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def _head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _tables(url: str) -> dict[str, set[str]]:
    """{table: {column names}} of what is in the database, the version table excluded."""
    eng = make_engine(url)
    try:
        insp = inspect(eng)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names() if t != VERSION_TABLE}
    finally:
        eng.dispose()


def _model_tables() -> dict[str, set[str]]:
    return {name: {c.name for c in table.columns} for name, table in Base.metadata.tables.items()}


def _run(**overrides) -> ForecastRun:
    values = dict(
        issue_time=T0, method="rainnet", model_version="v1", started_at=T0,
        finished_at=T0 + timedelta(seconds=3), forecast_seconds=3.0,
    )
    values.update(overrides)
    return ForecastRun(**values)


def _frame(**overrides) -> FrameRecord:
    values = dict(scan_time=T0, checksum="0" * 64, archive_path="/archive/a.nc")
    values.update(overrides)
    return FrameRecord(**values)


def _result(run_id: int, **overrides) -> DamRainfall:
    values = dict(
        run_id=run_id, dam_id="wivenhoe", lead_minutes=5, valid_time=T0 + timedelta(minutes=5),
        mean_mm_h=1.0, max_mm_h=2.0, wet_fraction=0.5, depth_mm=0.1, dam_pixel_mm_h=1.5,
    )
    values.update(overrides)
    return DamRainfall(**values)


# -- the schema ------------------------------------------------------------------------


def test_upgrade_creates_every_model_table_with_the_same_columns(db_url):
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert _tables(db_url) == _model_tables()
    assert current_revision(db_url) == _head()


def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(db_url):
    upgrade(db_url)
    downgrade(db_url, "base")
    assert _tables(db_url) == {}
    assert current_revision(db_url) is None

    upgrade(db_url)
    assert _tables(db_url) == _model_tables()
    assert current_revision(db_url) == _head()
    upgrade(db_url)  # already at head: a no-op
    assert current_revision(db_url) == _head()


def test_migrations_match_the_models(engine):
    """What `alembic revision --autogenerate` would write is empty: no migration missing."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"the models and the migrations differ; add a migration:\n{diff}"


# -- constraints -----------------------------------------------------------------------


def test_one_frame_per_scan_time(engine):
    with Session(engine) as s:
        s.add(_frame())
        s.commit()
        s.add(_frame(checksum="1" * 64, archive_path="/archive/b.nc"))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        s.add(_frame(scan_time=T0 + timedelta(minutes=5)))  # another scan time is fine
        s.commit()
        assert s.scalar(select(FrameRecord.id).where(FrameRecord.scan_time == T0)) is not None
        assert len(s.scalars(select(FrameRecord)).all()) == 2


def test_one_run_per_issue_time_and_method(engine):
    with Session(engine) as s:
        s.add(_run())
        s.commit()
        s.add_all([_run(method="persistence"), _run(issue_time=T0 + timedelta(minutes=5))])
        s.commit()
        s.add(_run(model_version="v2"))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        assert len(s.scalars(select(ForecastRun)).all()) == 3


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ModelRecord(version="v1", path="/m/a.keras", checksum="0" * 64), id="models.version"),
        pytest.param(
            lambda: RejectedFile(file_name="a.nc", quarantine_path="/q/a.nc", reason_kind="corrupt", reason="x"),
            id="rejected_files.quarantine_path",
        ),
    ],
)
def test_other_unique_columns(engine, make):
    with Session(engine) as s:
        s.add(make())
        s.commit()
        s.add(make())
        with pytest.raises(IntegrityError):
            s.commit()


def test_one_result_per_run_dam_and_lead_and_results_cascade(engine):
    with Session(engine) as s:
        run = _run()
        s.add(run)
        s.flush()
        s.add_all([_result(run.id), _result(run.id, lead_minutes=10), _result(run.id, dam_id="somerset")])
        s.commit()
        s.add(_result(run.id, mean_mm_h=9.0))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()

        # The foreign key exists and is enforced (SQLite needs PRAGMA foreign_keys=ON) ...
        s.add(_result(run.id + 1000))
        with pytest.raises(IntegrityError):
            s.commit()
        s.rollback()
        # ... and ON DELETE CASCADE is in the database, not only in the ORM.
        s.execute(delete(ForecastRun).where(ForecastRun.id == run.id))
        s.commit()
        assert s.scalars(select(DamRainfall)).all() == []


# -- UTCDateTime -----------------------------------------------------------------------


def test_utc_datetime_round_trips_tz_aware_utc(engine):
    brisbane = timezone(timedelta(hours=10))
    scan_local = datetime(2024, 1, 15, 13, 30, 0, 123456, tzinfo=brisbane)  # = 03:30:00.123456 UTC
    with Session(engine) as s:
        s.add(_frame(scan_time=scan_local))
        s.commit()

    with Session(engine) as s:
        frame = s.scalars(select(FrameRecord)).one()
        assert frame.scan_time.tzinfo is UTC
        assert frame.scan_time == scan_local
        assert frame.scan_time == datetime(2024, 1, 15, 3, 30, 0, 123456, tzinfo=UTC)
        assert frame.received_at.tzinfo is UTC  # the Python-side default
        assert abs(frame.received_at - datetime.now(UTC)) < timedelta(minutes=5)
        # Comparisons are done in UTC, whatever zone the parameter is in.
        hit = s.scalars(select(FrameRecord).where(FrameRecord.scan_time == scan_local.astimezone(UTC))).one()
        assert hit.id == frame.id
        # Stored as naive UTC.
        raw = s.execute(text("SELECT scan_time FROM frames")).scalar_one()
        if isinstance(raw, str):  # SQLite
            raw = datetime.fromisoformat(raw)
        assert raw.tzinfo is None and raw == datetime(2024, 1, 15, 3, 30, 0, 123456)


def test_utc_datetime_refuses_naive_times(engine):
    with Session(engine) as s:
        s.add(_frame(scan_time=datetime(2024, 1, 15, 3, 30)))
        with pytest.raises(StatementError, match="naive datetime"):
            s.commit()


# -- the fixtures themselves -----------------------------------------------------------


def test_each_test_gets_a_fresh_empty_database(db_url):
    from nowcast_core.db.engine import create_sqlite_file

    create_sqlite_file(db_url)  # as a migration does first (no engine creates a SQLite file)
    assert _tables(db_url) == {}
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            if db_url.startswith("postgresql"):
                # Not UTC on purpose: nothing may depend on the server's zone.
                assert conn.execute(text("SHOW TimeZone")).scalar_one() != "UTC"
                assert conn.execute(text("SELECT current_database()")).scalar_one() == db_url.rsplit("/", 1)[1]
            else:
                assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        eng.dispose()


def _store_dam_probability(db_url: str, **pooled) -> None:
    """One production run with its ensemble run and one dam row (``pooled``: the STEPS columns)."""
    from nowcast_core.db.schema import DamProbability, EnsembleRun

    eng = make_engine(db_url)
    try:
        with Session(eng) as s:
            run = _run()
            s.add(run)
            s.flush()
            ens = EnsembleRun(issue_time=T0, method="rainnet-ensemble", version="v", is_production=True, run_id=run.id,
                              n_members=2, seed=1, seconds=0.1, probability_path="p.npz", probability_checksum="0" * 64)
            ens.dams.append(DamProbability(dam_id="d", lead_minutes=60, valid_time=T0, accum_mm=1.0, accum_mm_p10=0.5,
                                           accum_mm_p50=1.0, accum_mm_p90=2.0, accum_mm_members=[0.5, 2.0],
                                           prob_accum_ge={"5": 0.0}, prob_rate_ge={"1": 0.5}, **pooled))
            s.add(ens)
            s.commit()
    finally:
        eng.dispose()


def _first_dam_probability(db_url: str):
    from nowcast_core.db.schema import DamProbability

    eng = make_engine(db_url)
    try:
        with Session(eng, expire_on_commit=False) as s:
            return s.scalar(select(DamProbability))
    finally:
        eng.dispose()


def test_0006_adds_and_removes_only_the_probabilistic_tables_and_keeps_rows(db_url):
    """Downgrading 0006 keeps every earlier table and its rows; upgrading again restores the ensemble tables."""
    upgrade(db_url)
    _store_dam_probability(db_url)
    again = _first_dam_probability(db_url)
    assert again.prob_rate_ge == {"1": 0.5} and again.accum_mm_members == [0.5, 2.0]
    downgrade(db_url, "0005")
    tables = _tables(db_url)
    assert not {"ensemble_runs", "dam_probabilities", "probability_verification"} & set(tables)
    assert "probability" not in tables["dam_alerts"] and "forecast_runs" in tables
    eng = make_engine(db_url)
    try:
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM forecast_runs")).scalar_one() == 1
    finally:
        eng.dispose()
    upgrade(db_url)
    assert _tables(db_url) == _model_tables()


def test_0008_adds_and_removes_only_the_pooled_member_columns_and_keeps_rows(db_url):
    """Rows stored before 0008 keep NULL pooled members (the alert weighs their own members equally);
    downgrading drops only the two columns."""
    upgrade(db_url)
    _store_dam_probability(db_url, steps_accum_mm_members=[0.0], steps_weight=0.4)
    downgrade(db_url, "0007")
    assert _tables(db_url)["dam_probabilities"] == _model_tables()["dam_probabilities"] - {
        "steps_accum_mm_members", "steps_weight"}
    upgrade(db_url)
    assert _tables(db_url) == _model_tables()
    row = _first_dam_probability(db_url)
    assert row.accum_mm_members == [0.5, 2.0] and row.steps_accum_mm_members is None and row.steps_weight is None


def test_0009_records_archive_and_retrained_model_paths_relative_even_after_a_move(db_url, tmp_path):
    """Old absolute paths keep their layout's tail (so an installation moved before the upgrade is
    mended); the shipped model and a model registered from elsewhere stay absolute; the downgrade makes
    the relative ones absolute under the installation's folders again."""
    upgrade(db_url, "0008")
    old = "/srv/old-home"
    eng = make_engine(db_url)
    try:
        with Session(eng) as s:
            s.add(_frame(archive_path=f"{old}/archive/2024/05/01/RDR_202405011200.npz"))
            s.add(_frame(scan_time=T0 + timedelta(minutes=10), checksum="1" * 64, archive_path="/elsewhere/odd.npz"))
            s.add(ModelRecord(version="rainnet-aaaaaaaaaaaa", path=f"{old}/models/rainnet-aaaaaaaaaaaa.keras",
                              checksum="a" * 64, decision="promoted", metrics={}))
            s.add(ModelRecord(version="rainnet-bbbbbbbbbbbb", path="/venv/nowcast_core/data/models/rainnet.keras",
                              checksum="b" * 64, decision="bundled", metrics={}))
            s.add(ModelRecord(version="rainnet-cccccccccccc", path="/elsewhere/models/by-hand.keras",
                              checksum="c" * 64, decision="pending", metrics={}))
            s.commit()
    finally:
        eng.dispose()

    def paths():
        e = make_engine(db_url)
        try:
            with e.connect() as conn:
                return ([p for (p,) in conn.execute(text("SELECT archive_path FROM frames ORDER BY id"))],
                        [p for (p,) in conn.execute(text("SELECT path FROM models ORDER BY id"))])
        finally:
            e.dispose()

    upgrade(db_url)
    assert paths() == (["2024/05/01/RDR_202405011200.npz", "/elsewhere/odd.npz"],
                       ["models/rainnet-aaaaaaaaaaaa.keras", "/venv/nowcast_core/data/models/rainnet.keras",
                        "/elsewhere/models/by-hand.keras"])
    new = tmp_path / "new-home"
    downgrade(db_url, "0008", archive=new / "archive", home=new)
    assert paths() == ([str(new / "archive/2024/05/01/RDR_202405011200.npz"), "/elsewhere/odd.npz"],
                       [str(new / "models/rainnet-aaaaaaaaaaaa.keras"), "/venv/nowcast_core/data/models/rainnet.keras",
                        "/elsewhere/models/by-hand.keras"])


def test_0010_adds_and_removes_only_the_pruned_marks_and_keeps_rows(db_url):
    """Runs stored before 0010 are kept (NULL: their files were never pruned); downgrading drops the marks
    and their indexes, nothing else."""
    upgrade(db_url, "0009")
    eng = make_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.execute(text("INSERT INTO forecast_runs (issue_time, method, model_version, is_production, status, "
                              "note, started_at, finished_at, forecast_seconds, field_path) VALUES "
                              "('2024-01-15 03:30:00', 'rainnet', 'v1', true, 'ok', '', '2024-01-15 03:30:00', "
                              "'2024-01-15 03:30:03', 3.0, '2024/01/15/x.npz')"))
    finally:
        eng.dispose()
    upgrade(db_url)
    assert _tables(db_url) == _model_tables()
    with Session(make_engine(db_url)) as s:
        run = s.scalar(select(ForecastRun))
        assert run.field_path == "2024/01/15/x.npz" and run.files_pruned_at is None
        run.files_pruned_at = T0
        s.commit()
    downgrade(db_url, "0009")
    tables = _tables(db_url)
    assert "files_pruned_at" not in tables["forecast_runs"] | tables["ensemble_runs"]
    assert tables["forecast_runs"] == _model_tables()["forecast_runs"] - {"files_pruned_at"}
    upgrade(db_url)
    assert _tables(db_url) == _model_tables()


def test_an_upgrade_is_logged_and_a_newer_schema_is_refused_with_what_to_do(db_url, caplog):
    from nowcast_core.db.migrate import SchemaError, check_current

    upgrade(db_url, "0009")
    with pytest.raises(SchemaError, match="is at 0009, this version needs"):
        check_current(db_url)
    caplog.set_level("INFO", logger="nowcast_core.db.migrate")
    upgrade(db_url)
    assert f"database schema upgraded from 0009 to {_head()}" in caplog.text
    check_current(db_url)
    eng = make_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    finally:
        eng.dispose()
    for attempt in (check_current, upgrade, lambda url: downgrade(url, "0009")):
        with pytest.raises(SchemaError, match="is at 9999, newer than this version of nowcast knows") as caught:
            attempt(db_url)
        assert f"nowcast db downgrade {_head()}" in caught.value.hint
