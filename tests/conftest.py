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

Data
    ``shared_radar`` (session)     Path of the real radar data, ``<repo>/../shared/data/radar``;
                                   skipped when absent (failed when CI is set).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

try:  # tests/ as a package or as a plain rootdir (pytest's default "prepend" import mode)
    from . import pg
except ImportError:
    import pg

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


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
