"""The database: typed SQLAlchemy models, engine set-up and Alembic migrations."""

from nowcast_core.db.engine import make_engine, session_factory
from nowcast_core.db.migrate import downgrade, upgrade

__all__ = ["make_engine", "session_factory", "upgrade", "downgrade"]
