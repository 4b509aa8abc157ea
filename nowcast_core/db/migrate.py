"""Alembic migrations, applied programmatically (at start-up and by ``nowcast db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

# The top-level migrations/ folder, shipped inside the package through this link (see pyproject.toml).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base", *, archive: Path | None = None, home: Path | None = None) -> None:
    """Migrate the database at ``url`` down to ``revision``.

    ``archive`` and ``home``: the installation's folders, under which revision 0009's relative paths
    are made absolute again when it is undone (default: the settings)."""
    cfg = alembic_config(url)
    if archive is not None and home is not None:
        cfg.attributes.update(archive=Path(archive), home=Path(home))
    command.downgrade(cfg, revision)


def head_revision() -> str:
    """The newest schema revision this version of the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from nowcast_core.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
