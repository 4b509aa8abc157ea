"""Schema of the application database (migrated by Alembic, see ``migrations/``).

Unique constraints make every rerun idempotent: one frame per scan time, one run per
(issue time, method), one result per (run, dam, lead).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from nowcast_core.io.files import resolve_stored


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (stored naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use UTC-aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


#: Quality of rows stored before the plausibility checks existed (migration 0003).
UNCHECKED = "unchecked"


class Base(DeclarativeBase):
    pass


class FrameRecord(Base):
    """A registered (valid, archived) radar scan."""

    __tablename__ = "frames"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_time: Mapped[datetime] = mapped_column(UTCDateTime, unique=True, index=True)
    checksum: Mapped[str] = mapped_column(String(64))
    archive_path: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # registered
    #: When the file arrived in the inbox (its ctime: the rename into the folder or the last write);
    #: None for scans registered before migration 0005.
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    nodata_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    wet_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    #: Mean rain rate over the covered pixels (None: registered before it was recorded).
    mean_mm_h: Mapped[float | None] = mapped_column(Float)
    #: "ok", or why the scan cannot be real weather ("outage: ...", "saturated: ...", "jump: ...");
    #: "unchecked" for scans registered before the plausibility checks existed.
    quality: Mapped[str] = mapped_column(Text, server_default=UNCHECKED)

    def archived_file(self, archive: Path) -> Path:
        """Where the scan's file is now: ``archive_path`` is recorded relative to the archive
        (absolute before migration 0009, and then read where it is)."""
        return resolve_stored(archive, self.archive_path)


class RejectedFile(Base):
    """A file that broke the contract, moved to quarantine with its reason."""

    __tablename__ = "rejected_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(Text)
    quarantine_path: Mapped[str] = mapped_column(Text, unique=True)
    reason_kind: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str | None] = mapped_column(String(64))
    rejected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelRecord(Base):
    """A RainNet model file known to the system, with how it was judged."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    base_filters: Mapped[int | None] = mapped_column(Integer)
    n_params: Mapped[int | None] = mapped_column(Integer)
    data_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    role: Mapped[str] = mapped_column(String(16), default="candidate")  # champion|retired|rejected|candidate
    decision: Mapped[str] = mapped_column(String(16), default="pending")  # promoted|rejected|bundled|pending
    reason: Mapped[str] = mapped_column(Text, default="")
    promoted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def model_file(self, home: Path) -> Path:
        """Where the model's file is now: a retrained model's ``path`` is recorded relative to the
        installation's home; the shipped model and one registered from elsewhere are absolute."""
        return resolve_stored(home, self.path)


class ForecastRun(Base):
    """One forecast of one method from one issue time (the newest input scan)."""

    __tablename__ = "forecast_runs"
    #: The retention's query (files not yet pruned, oldest first) seeks; it does not walk the pruned years.
    __table_args__ = (UniqueConstraint("issue_time", "method", name="uq_run_issue_method"),
                      Index("ix_forecast_runs_kept_issue_time", "files_pruned_at", "issue_time"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    method: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(64))
    is_production: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    note: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)  # set just before the run's commit: "stored_at"
    forecast_seconds: Mapped[float] = mapped_column(Float)
    field_path: Mapped[str | None] = mapped_column(Text)
    field_checksum: Mapped[str | None] = mapped_column(String(64))
    #: "ok" when all four input scans are "ok", else which inputs are not and why. Alerts are
    #: only ever raised from runs whose input is "ok" (see :attr:`input_ok`).
    input_quality: Mapped[str] = mapped_column(Text, server_default=UNCHECKED)
    #: When the field file was deleted by the retention (``keep_forecast_files_days``; migration 0010);
    #: None while it is kept. The dam results and verification stay.
    files_pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    results: Mapped[list[DamRainfall]] = relationship(back_populates="run", cascade="all, delete-orphan",
                                                       passive_deletes=True)

    @property
    def input_ok(self) -> bool:
        """True when every input scan passed the plausibility checks: only then may an alert be raised."""
        return self.input_quality == "ok"


class DamRainfall(Base):
    """Rainfall over one dam's catchment at one lead of one run."""

    __tablename__ = "dam_rainfall"
    __table_args__ = (UniqueConstraint("run_id", "dam_id", "lead_minutes", name="uq_result_run_dam_lead"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"), index=True)
    dam_id: Mapped[str] = mapped_column(String(64), index=True)
    lead_minutes: Mapped[int] = mapped_column(Integer)
    valid_time: Mapped[datetime] = mapped_column(UTCDateTime)
    mean_mm_h: Mapped[float] = mapped_column(Float)
    max_mm_h: Mapped[float] = mapped_column(Float)
    wet_fraction: Mapped[float] = mapped_column(Float)
    depth_mm: Mapped[float] = mapped_column(Float)
    dam_pixel_mm_h: Mapped[float] = mapped_column(Float)
    alert: Mapped[str | None] = mapped_column(String(16))  # None | "watch" (>=50 mm/1 h) | "emergency" (>=72 mm/1 h)
    observed_mean_mm_h: Mapped[float | None] = mapped_column(Float)  # filled in by verification
    observed_dam_pixel_mm_h: Mapped[float | None] = mapped_column(Float)

    run: Mapped[ForecastRun] = relationship(back_populates="results")


class LeadVerification(Base):
    """Verification of one run at one lead against the scan observed at its valid time."""

    __tablename__ = "lead_verification"
    __table_args__ = (UniqueConstraint("run_id", "lead_minutes", name="uq_verification_run_lead"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"), index=True)
    lead_minutes: Mapped[int] = mapped_column(Integer)
    valid_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    n_pixels: Mapped[int] = mapped_column(Integer)
    abs_error_sum: Mapped[float] = mapped_column(Float)
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Pixels at or above 5 mm/h (``structure.AREA_THRESHOLD_MM_H``) in the forecast and in the
    #: observation, over the valid pixels (migration 0007). Both None, and no :class:`FssSums`
    #: rows, for a (run, lead) verified before the structure sums were stored.
    area_forecast_px: Mapped[int | None] = mapped_column(Integer, nullable=True)
    area_observed_px: Mapped[int | None] = mapped_column(Integer, nullable=True)

    contingency: Mapped[list[Contingency]] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    fss_sums: Mapped[list[FssSums]] = relationship(cascade="all, delete-orphan", passive_deletes=True)

    @property
    def has_structure(self) -> bool:
        """True when this (run, lead) carries structure sums (verified after migration 0007)."""
        return self.area_forecast_px is not None


class Contingency(Base):
    """Contingency table of one run, lead and rain-rate threshold."""

    __tablename__ = "contingency"
    __table_args__ = (UniqueConstraint("verification_id", "threshold_mm_h", name="uq_contingency_threshold"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verification_id: Mapped[int] = mapped_column(ForeignKey("lead_verification.id", ondelete="CASCADE"), index=True)
    threshold_mm_h: Mapped[float] = mapped_column(Float)
    hits: Mapped[int] = mapped_column(Integer)
    misses: Mapped[int] = mapped_column(Integer)
    false_alarms: Mapped[int] = mapped_column(Integer)
    correct_negatives: Mapped[int] = mapped_column(Integer)


class FssSums(Base):
    """Additive sums of the fractions skill score of one run and lead at one threshold and
    neighbourhood (see :mod:`nowcast_core.verification.structure`): over the valid pixels, the
    sums of F^2, O^2 and F O, F and O the fractions of a ``window_km`` square window at or above
    ``threshold_mm_h``. Summed over any pool of (run, lead), FSS = 1 - (forecast_sq - 2 product
    + observed_sq) / (forecast_sq + observed_sq) of the pool, exactly."""

    __tablename__ = "fss_sums"
    __table_args__ = (
        UniqueConstraint("verification_id", "threshold_mm_h", "window_km", name="uq_fss_sums_thr_window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    verification_id: Mapped[int] = mapped_column(ForeignKey("lead_verification.id", ondelete="CASCADE"), index=True)
    threshold_mm_h: Mapped[float] = mapped_column(Float)
    window_km: Mapped[int] = mapped_column(Integer)
    forecast_sq: Mapped[float] = mapped_column(Float)
    observed_sq: Mapped[float] = mapped_column(Float)
    product: Mapped[float] = mapped_column(Float)


# --- alerts, their notifications and the service's own state (migration 0004) -----


class DamAlert(Base):
    """The alert level of one dam from one production run (see ``nowcast_core.alerts``)."""

    __tablename__ = "dam_alerts"
    __table_args__ = (UniqueConstraint("run_id", "dam_id", name="uq_dam_alert_run_dam"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"), index=True)
    dam_id: Mapped[str] = mapped_column(String(64), index=True)
    issue_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    level: Mapped[str] = mapped_column(String(16))  # none | advisory | emergency
    previous_level: Mapped[str] = mapped_column(String(16))  # the dam's level at the run before
    observed_2h_mm: Mapped[float] = mapped_column(Float)
    observed_scans: Mapped[int] = mapped_column(Integer)  # scans found of the 12 of the last 2 h
    forecast_1h_mm: Mapped[float] = mapped_column(Float)
    total_3h_mm: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Probability of the level's event from the production ensemble (migration 0006); None: the
    #: level comes from the deterministic forecast (no ensemble for the run).
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)

    run: Mapped[ForecastRun] = relationship()


class AlertChange(Base):
    """A change of a dam's notified level: one per assessment at most, sent to every webhook once."""

    __tablename__ = "alert_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("dam_alerts.id", ondelete="CASCADE"), unique=True)
    dam_id: Mapped[str] = mapped_column(String(64), index=True)
    issue_time: Mapped[datetime] = mapped_column(UTCDateTime)
    from_level: Mapped[str] = mapped_column(String(16))
    to_level: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    alert: Mapped[DamAlert] = relationship()
    deliveries: Mapped[list[WebhookOutbox]] = relationship(back_populates="change", cascade="all, delete-orphan",
                                                           passive_deletes=True)


class WebhookOutbox(Base):
    """One change to deliver to one webhook (unique: never sent twice); status pending|delivered|failed."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (UniqueConstraint("change_id", "url", name="uq_outbox_change_url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("alert_changes.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)

    change: Mapped[AlertChange] = relationship(back_populates="deliveries")
    tries: Mapped[list[WebhookAttempt]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class WebhookAttempt(Base):
    """One HTTP POST of an outbox row: when, the status code or the error, how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("webhook_outbox.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class ServiceState(Base):
    """Small facts the daemon records for other processes (e.g. ``last_cycle``: when, how long)."""

    __tablename__ = "service_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# --- probabilistic nowcasts (migration 0006) ----------------------------------------


class EnsembleRun(Base):
    """One ensemble forecast from one issue time: the production ensemble (centred on the production
    run) or the reference (pysteps STEPS). Its pixel exceedance probabilities are a file beside the
    forecast fields (``probability_path``)."""

    __tablename__ = "ensemble_runs"
    __table_args__ = (UniqueConstraint("issue_time", "method", name="uq_ensemble_issue_method"),
                      Index("ix_ensemble_runs_kept_issue_time", "files_pruned_at", "issue_time"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    method: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(128))
    is_production: Mapped[bool] = mapped_column(Boolean, default=True)
    #: The deterministic production run it is centred on (None for the reference).
    run_id: Mapped[int | None] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"), nullable=True,
                                               index=True)
    n_members: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    probability_path: Mapped[str] = mapped_column(Text)
    probability_checksum: Mapped[str] = mapped_column(String(64))
    input_quality: Mapped[str] = mapped_column(Text, server_default=UNCHECKED)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When the probability file was deleted by the retention (migration 0010); None while it is kept.
    files_pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    dams: Mapped[list[DamProbability]] = relationship(back_populates="ensemble", cascade="all, delete-orphan",
                                                      passive_deletes=True)


class DamProbability(Base):
    """Catchment accumulation of one dam at one lead of one ensemble run: the deterministic value,
    its member quantiles, exceedance probabilities, and (once observed) its verification."""

    __tablename__ = "dam_probabilities"
    __table_args__ = (UniqueConstraint("ensemble_id", "dam_id", "lead_minutes", name="uq_dam_probability"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ensemble_id: Mapped[int] = mapped_column(ForeignKey("ensemble_runs.id", ondelete="CASCADE"), index=True)
    dam_id: Mapped[str] = mapped_column(String(64), index=True)
    lead_minutes: Mapped[int] = mapped_column(Integer)
    valid_time: Mapped[datetime] = mapped_column(UTCDateTime)
    accum_mm: Mapped[float] = mapped_column(Float)
    accum_mm_p10: Mapped[float] = mapped_column(Float)
    accum_mm_p50: Mapped[float] = mapped_column(Float)
    accum_mm_p90: Mapped[float] = mapped_column(Float)
    accum_mm_members: Mapped[list] = mapped_column(JSON, default=list)
    #: The STEPS members' accumulations these products were pooled with, and their weight (NULL unpooled).
    steps_accum_mm_members: Mapped[list | None] = mapped_column(JSON)
    steps_weight: Mapped[float | None] = mapped_column(Float)
    prob_accum_ge: Mapped[dict] = mapped_column(JSON, default=dict)
    prob_rate_ge: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Filled in by verification once every scan up to the valid time has arrived.
    observed_accum_mm: Mapped[float | None] = mapped_column(Float)
    crps_accum_mm: Mapped[float | None] = mapped_column(Float)
    observed_rank: Mapped[int | None] = mapped_column(Integer)

    ensemble: Mapped[EnsembleRun] = relationship(back_populates="dams")


class ProbabilityVerification(Base):
    """Additive counts of one ensemble run's pixel probabilities at one lead and rain-rate threshold
    (see :class:`nowcast_core.verification.probabilistic.ProbCounts`)."""

    __tablename__ = "probability_verification"
    __table_args__ = (UniqueConstraint("ensemble_id", "lead_minutes", "threshold_mm_h", name="uq_probability_verification"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ensemble_id: Mapped[int] = mapped_column(ForeignKey("ensemble_runs.id", ondelete="CASCADE"), index=True)
    lead_minutes: Mapped[int] = mapped_column(Integer)
    valid_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    threshold_mm_h: Mapped[float] = mapped_column(Float)
    n_pixels: Mapped[int] = mapped_column(Integer)
    brier_sum: Mapped[float] = mapped_column(Float)
    bin_n: Mapped[list] = mapped_column(JSON)
    bin_prob_sum: Mapped[list] = mapped_column(JSON)
    bin_events: Mapped[list] = mapped_column(JSON)
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
