"""Shared fixtures.

Databases
    ``postgres_server`` (session)  a real throwaway PostgreSQL server (see ``tests/pg.py``),
                                   started on first use, stopped at the end of the session.
    ``pg_url``                     a fresh, empty PostgreSQL database per test (dropped after):
                                   ``postgresql://postgres@127.0.0.1:PORT/t_<random>``.
    ``sqlite_url``                 a fresh SQLite file per test: ``sqlite:///<tmp_path>/nowcast.db``.
    ``db_url``                     parametrized over both: every test that uses it runs once on
                                   ``[sqlite]`` and once on ``[postgres]`` (marked ``postgres``,
                                   so ``-m "not postgres"`` leaves the server out).

    Without PostgreSQL server binaries the PostgreSQL tests are skipped, or fail when the
    environment variable CI is set.

Services
    ``make_service``               ``make_service(**settings)``: a migrated :class:`Service` on
                                   ``db_url`` with a home under ``tmp_path`` (persistence, no
                                   baselines, no settle time unless overridden); closed after.
    ``make_sqlite_service``        the same on ``sqlite_url`` only.

Every test runs without the caller's ``NOWCAST_*`` and ``PREFECT_*`` environment variables.

Data
    ``shared_radar`` (session)     Path of the real radar data, ``<repo>/../shared/data/radar``;
                                   skipped when absent (failed when CI is set).

Benchmarks
    ``bench_module(name)``         a script of ``bench/`` imported as a module (its helpers tested).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service

try:  # tests/ as a package or as a plain rootdir (pytest's default "prepend" import mode)
    from . import pg
except ImportError:
    import pg

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    """``bench/<name>.py`` imported as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unavailable(reason: str) -> None:
    """Fail under CI (a missing prerequisite is a broken CI), skip on a workstation."""
    if pg.ci_enabled():
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


def pytest_report_header(config) -> str:
    try:
        bindir = pg.find_bindir()
        return f"postgresql: {pg.server_version(bindir)} ({bindir})"
    except Exception as exc:  # noqa: BLE001 - only a header
        return f"postgresql: unavailable ({exc})"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    try:
        server = pg.PostgresServer()
    except pg.PostgresUnavailable as exc:
        _unavailable(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: pg.PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nowcast.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database URL, once per backend."""
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")


@pytest.fixture(scope="session")
def shared_radar() -> Path:
    radar = SHARED_DIR / "data" / "radar"
    if not radar.is_dir():
        _unavailable(f"real radar data not found at {radar}")
    return radar


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith(("NOWCAST_", "PREFECT_"))]:
        monkeypatch.delenv(key)


def _service_factory(tmp_path: Path, database_url: str):
    made = []

    def make(**overrides) -> Service:
        kwargs = {"home": tmp_path / "home", "database_url": database_url, "settle_seconds": 0,
                  "method": "persistence", "baselines": [], "reference_ensemble": "", "ensemble_members": 6}
        kwargs.update(overrides)
        svc = Service(load_settings(**kwargs))
        svc.migrate()
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


@pytest.fixture
def make_service(tmp_path: Path, db_url: str):
    yield from _service_factory(tmp_path, db_url)


@pytest.fixture
def make_sqlite_service(tmp_path: Path, sqlite_url: str):
    yield from _service_factory(tmp_path, sqlite_url)


# --- the web tests' filled home (issue 12): one real cycle on real scans per session
try:
    from .web_home import web_home  # noqa: E402,F401
except ImportError:
    from web_home import web_home  # noqa: E402,F401


# --- the command line as a new user meets it (tests/test_cli_errors.py and others)
@pytest.fixture
def in_empty_folder(tmp_path, monkeypatch):
    """An empty working folder and no NOWCAST_* settings, as for a new user."""
    for key in list(os.environ):
        if key.startswith("NOWCAST_"):
            monkeypatch.delenv(key)
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def installed_home(tmp_path, monkeypatch, in_empty_folder, capsys):
    """A migrated, empty installation."""
    home = tmp_path / "home"
    monkeypatch.setenv("NOWCAST_HOME", str(home))
    from test_cli_errors import nowcast

    code, lines = nowcast(capsys, "db", "upgrade")
    assert code == 0, lines
    return home
