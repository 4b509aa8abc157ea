"""Alembic environment: the URL comes from the caller's config or from NOWCAST settings."""

from alembic import context

from nowcast_core.db.engine import make_engine
from nowcast_core.db.schema import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from nowcast_core.config import load_settings

    return load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode copies and drops tables on SQLite; with foreign keys on, the DROP
                # would cascade into child rows. The pragma only takes effect outside a transaction.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":  # two processes starting at once migrate one at a time
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
                context.run_migrations()
                if sqlite and (dangling := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"migration left dangling foreign keys: {dangling}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
