"""relative stored paths: the archive and the home's models recorded relative to their folder

Until now a registered scan's ``frames.archive_path`` and a retrained model's ``models.path`` were
absolute, so an installation restored or moved to another folder read files at the old place. They
are now recorded relative to the configured archive (``YYYY/MM/DD/<file name>``, the archive's one
layout) and to the home (``models/<version>.keras``, where retraining writes), and resolved against
the configured folders when read. A path that does not follow those layouts (a model registered by
hand from elsewhere, the shipped model) stays absolute and is read where it is.

The upgrade needs no configuration: it keeps the layout's tail of each absolute path, so it also
mends an installation that was moved before it ran. The downgrade makes the paths absolute again
under the configured archive and home (passed by ``nowcast db downgrade``, else the settings).

Revision ID: 0009
Revises: 0008
"""
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_ARCHIVE_TAIL = re.compile(r"/(\d{4}/\d{2}/\d{2}/[^/]+)$")

frames = sa.table('frames', sa.column('id', sa.Integer), sa.column('archive_path', sa.Text))
models = sa.table('models', sa.column('id', sa.Integer), sa.column('path', sa.Text),
                  sa.column('version', sa.String), sa.column('decision', sa.String))


def _model_tail(path: str, version: str, decision: str) -> str | None:
    p = Path(path)
    if decision != 'bundled' and p.name == f"{version}.keras" and p.parent.name == 'models':
        return f"models/{p.name}"
    return None


def upgrade() -> None:
    conn = op.get_bind()
    for row_id, path in conn.execute(sa.select(frames.c.id, frames.c.archive_path)
                                     .where(frames.c.archive_path.like('/%'))).all():
        if (m := _ARCHIVE_TAIL.search(path)) is not None:
            conn.execute(frames.update().where(frames.c.id == row_id).values(archive_path=m.group(1)))
    for row_id, path, version, decision in conn.execute(
            sa.select(models.c.id, models.c.path, models.c.version, models.c.decision)
            .where(models.c.path.like('/%'))).all():
        if (tail := _model_tail(path, version, decision)) is not None:
            conn.execute(models.update().where(models.c.id == row_id).values(path=tail))


def _roots() -> tuple[Path, Path]:
    attributes = op.get_context().config.attributes
    if 'archive' in attributes and 'home' in attributes:
        return Path(attributes['archive']), Path(attributes['home'])
    from nowcast_core.config import load_settings

    settings = load_settings()
    return settings.archive, settings.home


def downgrade() -> None:
    conn = op.get_bind()
    relative_frames = conn.execute(sa.select(frames.c.id, frames.c.archive_path)
                                   .where(sa.not_(frames.c.archive_path.like('/%')))).all()
    relative_models = conn.execute(sa.select(models.c.id, models.c.path).where(sa.not_(models.c.path.like('/%')))).all()
    if not relative_frames and not relative_models:
        return
    archive, home = _roots()
    for row_id, path in relative_frames:
        conn.execute(frames.update().where(frames.c.id == row_id).values(archive_path=str(archive / path)))
    for row_id, path in relative_models:
        conn.execute(models.update().where(models.c.id == row_id).values(path=str(home / path)))
