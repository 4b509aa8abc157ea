"""The model registry: which RainNet file is the production champion, and why.

Every model file the system has known is a row of ``models`` with its checksum, metrics,
data span and the decision taken on it. At most one row has ``role='champion'``; the others are ``candidate``, ``rejected``,
``retired`` (replaced by a better one) or ``rolled_back``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from nowcast_core.db.schema import ModelRecord
from nowcast_core.io.files import file_sha256, stored_path
from nowcast_core.rainnet import model_version
from nowcast_core.times import iso_minutes, iso_utc


def champion(session: Session) -> ModelRecord | None:
    """The current production model, if any."""
    return session.scalar(select(ModelRecord).where(ModelRecord.role == "champion"))


def list_models(session: Session) -> list[ModelRecord]:
    """All known models, oldest first."""
    return list(session.scalars(select(ModelRecord).order_by(ModelRecord.created, ModelRecord.id)))


def register_model(session: Session, path: str | Path, *, home: Path, role: str = "candidate", decision: str = "pending",
                   reason: str = "", metrics: dict | None = None, base_filters: int | None = None,
                   n_params: int | None = None, data_start: datetime | None = None,
                   data_end: datetime | None = None) -> ModelRecord:
    """Add a model file to the registry (idempotent on its checksum). Does not commit.

    A file inside the installation's ``home`` is recorded relative to it (the home can move)."""
    checksum = file_sha256(path)
    version = model_version(checksum)
    existing = session.scalar(select(ModelRecord).where(ModelRecord.version == version))
    if existing is not None:
        return existing
    record = ModelRecord(version=version, path=stored_path(Path(home).resolve(), Path(path).resolve()),
                         checksum=checksum, role=role,
                         decision=decision, reason=reason, metrics=metrics or {}, base_filters=base_filters,
                         n_params=n_params, data_start=data_start, data_end=data_end)
    session.add(record)
    session.flush()
    return record


def promote(session: Session, record: ModelRecord, reason: str) -> None:
    """Make ``record`` the champion; the old champion is retired. Does not commit."""
    current = champion(session)
    if current is not None and current.id != record.id:
        current.role = "retired"
    record.role = "champion"
    record.promoted_at = datetime.now(UTC)
    record.reason = reason
    if record.decision in ("pending", "rejected"):
        record.decision = "promoted"


def rollback(session: Session) -> ModelRecord:
    """Withdraw the champion and bring back the one promoted before it. Does not commit.

    The withdrawn model gets role ``rolled_back`` and is never restored by a later rollback.

    Raises
    ------
    LookupError
        No champion, or no earlier champion to return to.
    """
    current = champion(session)
    if current is None:
        raise LookupError("there is no champion to roll back")
    previous = session.scalar(
        select(ModelRecord)
        .where(ModelRecord.id != current.id, ModelRecord.promoted_at.is_not(None),
               ModelRecord.promoted_at < current.promoted_at, ModelRecord.role != "rolled_back")
        .order_by(ModelRecord.promoted_at.desc(), ModelRecord.id.desc()).limit(1))
    if previous is None:
        raise LookupError(f"{current.version} is the first champion: nothing to roll back to")
    current.role = "rolled_back"
    current.reason = f"rolled back on {iso_minutes(datetime.now(UTC))}; was: {current.reason}"
    previous.role = "champion"
    previous.reason = f"restored by rollback of {current.version}; was: {previous.reason}"
    return previous


def model_row(record: ModelRecord, home: Path) -> dict:
    """A registry entry as plain JSON-able values."""
    iso = iso_utc
    return {
        "id": record.id, "created": iso(record.created), "version": record.version, "role": record.role,
        "decision": record.decision, "reason": record.reason, "metrics": record.metrics or {},
        "data_start": iso(record.data_start), "data_end": iso(record.data_end), "checksum": record.checksum,
        "path": str(record.model_file(home)), "base_filters": record.base_filters, "n_params": record.n_params,
        "promoted_at": iso(record.promoted_at),
    }


def ensure_bundled_registered(session: Session, bundled_path: Path | None, home: Path) -> ModelRecord | None:
    """Keep the shipped model in the registry: the first champion of a new installation; and while the
    champion is a shipped model, the file shipped with the package now running is the one used: the
    same file at another place (the package reinstalled or upgraded elsewhere, the old copy perhaps still
    there) updates the path, a different one (another version of the package) is registered and
    promoted. A champion trained here is never replaced. Returns the record changed."""
    if bundled_path is None or not Path(bundled_path).exists():
        return None
    bundled = Path(bundled_path).resolve()
    if session.scalar(select(ModelRecord.id).limit(1)) is None:
        reason = "shipped with the project: first production model"
    else:
        current = champion(session)
        if current is None or current.decision != "bundled":
            return None
        if current.path == str(bundled) and verify_model_file(current, home) is None:
            return None
        if file_sha256(bundled) == current.checksum:
            current.path = str(bundled)
            session.commit()
            return current
        reason = f"shipped with the version of the package now installed (replaces {current.version})"
    record = register_model(session, bundled, home=home, decision="bundled", reason=reason)
    record.path = stored_path(Path(home).resolve(), bundled)  # a record made before may name another copy
    promote(session, record, reason)
    session.commit()
    return record


def verify_model_file(record: ModelRecord, home: Path) -> str | None:
    """None when the file exists and matches its registry checksum, else why not."""
    path = record.model_file(home)
    if not path.exists():
        return f"model file {path} is missing"
    actual = file_sha256(path)
    if actual != record.checksum:
        return f"model file {path} is corrupt: sha256 {actual[:12]} != registered {record.checksum[:12]}"
    return None
