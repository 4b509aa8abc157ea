"""Alembic migrations, applied programmatically (at start-up and by ``nowcast db upgrade``)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

log = logging.getLogger(__name__)

# The top-level migrations/ folder, shipped inside the package through this link (see pyproject.toml).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class SchemaError(RuntimeError):
    """The database's schema is not one this version can use as it is (``hint``: what to do)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database at ``url`` up to ``revision``; returns the revisions before and after (an
    existing schema's upgrade is logged). A new SQLite installation's database file is created here."""
    from nowcast_core.db.engine import create_sqlite_file

    create_sqlite_file(url)
    before = current_revision(url)
    check_known(before)
    command.upgrade(alembic_config(url), revision)
    after = current_revision(url)
    if before is not None and before != after:
        log.info("database schema upgraded from %s to %s", before, after)
    return before, after


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {r.revision for r in ScriptDirectory.from_config(alembic_config("sqlite://")).walk_revisions()}


def check_known(current: str | None) -> None:
    """Raise :class:`SchemaError` when the database's revision ``current`` (None: no schema yet) is unknown
    here: a newer version of the code migrated it, and this one can neither use nor downgrade it."""
    if current is not None and current not in known_revisions():
        head = head_revision()
        raise SchemaError(f"the database schema is at {current}, newer than this version of nowcast knows "
                          f"(its newest is {head}): a newer version upgraded it",
                          f"run the newer version, or with it `nowcast db downgrade {head}` to go back")


def check_current(url: str) -> None:
    """Raise :class:`SchemaError` unless the database is at this version's head (for commands that only
    read, and never migrate)."""
    current = current_revision(url)
    check_known(current)
    if current != head_revision():
        raise SchemaError(f"the database schema is at {current or 'nothing'}, this version needs {head_revision()}",
                          "stop the daemon of the older version, back up (docs/DEPLOY.md section 8), then run "
                          "`nowcast db upgrade`")


def downgrade(url: str, revision: str = "base", *, archive: Path | None = None,
              home: Path | None = None) -> tuple[str | None, str | None]:
    """Migrate the database at ``url`` down to ``revision``; returns the revisions before and after.

    ``archive`` and ``home``: the installation's folders, under which revision 0009's relative paths
    are made absolute again when it is undone (default: the settings)."""
    before = current_revision(url)
    check_known(before)
    cfg = alembic_config(url)
    if archive is not None and home is not None:
        cfg.attributes.update(archive=Path(archive), home=Path(home))
    command.downgrade(cfg, revision)
    return before, current_revision(url)


def head_revision() -> str:
    """The newest schema revision this version of the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    """The schema revision of the database at ``url``; None for none yet (a SQLite file not yet created)."""
    from alembic.runtime.migration import MigrationContext

    from nowcast_core.db.engine import make_engine, sqlite_file

    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
