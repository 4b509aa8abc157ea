"""Engines and sessions for SQLite (default) and PostgreSQL (production)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def sqlite_file(url: str) -> Path | None:
    """The file of a file-based SQLite ``url`` (absolute); None for PostgreSQL and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def create_sqlite_file(url: str) -> None:
    """Create the empty database file of a file-based SQLite ``url`` if it is missing: only migrations do,
    for a new installation (:func:`nowcast_core.db.migrate.upgrade`); every engine opens it without creating."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        sqlite3.connect(path).close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys, and its file is opened
    read-write but never created (``mode=rw``): a database file moved or deleted under a running
    process is an error there, not a new empty database that cuts it off from its history."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None:
            url = f"sqlite:///file:{quote(str(path))}?mode=rw&uri=true"
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain):]
    return create_engine(url, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
