"""One installation's state (settings, database, dams, loaded forecasters) and its cycle steps.

The Prefect flows and the CLI call these methods; none of them needs Prefect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select

from nowcast_core.config import Settings, load_settings
from nowcast_core.contract import GRID_SHAPE, N_INPUTS
from nowcast_core.cycle import steps as cycle
from nowcast_core.cycle.retention import (
    PruneReport,
    last_prune,
    oldest_kept,
    prune_failing,
    prune_forecast_files,
    record_prune,
)
from nowcast_core.dams import load_dams
from nowcast_core.db import make_engine, session_factory, upgrade
from nowcast_core.db.engine import sqlite_file
from nowcast_core.db.schema import ForecastRun, FrameRecord, RejectedFile
from nowcast_core.forecasters import Forecaster, get_method
from nowcast_core.inbox.entries import scan_inbox
from nowcast_core.inbox.ingest import IngestReport, ingest_inbox
from nowcast_core.inbox.plausibility import QualityThresholds
from nowcast_core.inbox.watch import ReadyFiles
from nowcast_core.io.files import DiskSpace, disk_space
from nowcast_core.models.production import ProductionForecaster, resolve
from nowcast_core.times import duration_text, iso_minutes, iso_utc

log = logging.getLogger(__name__)

MAX_NAMES_SHOWN = 20
#: Runs whose files one cycle prunes at most: an installation that turns retention on after a year of
#: history catches up over a few hours of cycles instead of holding one cycle for minutes.
PRUNE_MAX_RUNS = 2000
#: While a disk stays low on free space the daemon's log repeats its warning this often.
DISK_WARNING_EVERY = timedelta(hours=1)


@dataclass
class ForecastSummary:
    method: str
    model_version: str
    runs: int = 0
    too_old: int = 0
    note: str = ""
    seconds: float = 0.0


@dataclass
class Service:
    settings: Settings
    production: ProductionForecaster = field(default_factory=ProductionForecaster)
    _baselines: dict[str, Forecaster] = field(default_factory=dict)
    _ensembles: dict[str, object] = field(default_factory=dict)
    _reference_failed: set = field(default_factory=set)
    #: Inbox files announced complete by an event (the daemon's watcher): no settle time for them.
    announced: ReadyFiles = field(default_factory=ReadyFiles)
    #: Issue times per forecaster call when a backlog is caught up.
    batch_issue_times: int = cycle.BATCH_ISSUE_TIMES

    #: False: open an existing installation only (read-only commands never create a home).
    create: bool = True
    _disk_warned_at: datetime | None = field(default=None, init=False, repr=False)
    _database_file: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.create:
            self.settings.ensure_dirs()
        self.engine = make_engine(self.settings.database_url)
        self.sessions = session_factory(self.engine)
        self.dams = load_dams(self.settings.dams_file)

    @classmethod
    def from_env(cls, **overrides) -> "Service":
        return cls(load_settings(**overrides))

    def migrate(self) -> None:
        """Bring the schema to this version's (an existing installation's upgrade is logged), and remember
        which SQLite file that was (:meth:`check_database_file`)."""
        upgrade(self.settings.database_url)
        path = sqlite_file(self.settings.database_url)
        if path is not None:
            st = path.stat()
            self._database_file = (path, st.st_dev, st.st_ino)

    def check_database_file(self) -> None:
        """Raise :class:`DatabaseFileGone` when the SQLite file this process migrated has since been moved
        away, deleted or replaced: its open connections would go on writing into a file nobody reads. The
        cycle checks it first, so the scans stay in the inbox until the file is back."""
        if self._database_file is None:
            return
        path, dev, ino = self._database_file
        try:
            st = path.stat()
        except FileNotFoundError:
            raise DatabaseFileGone(f"the database file {path} is gone (moved or deleted while the daemon ran); "
                                   "scans wait in the inbox until it is back, or restore it from a backup "
                                   "(docs/DEPLOY.md) and restart the daemon") from None
        if (st.st_dev, st.st_ino) != (dev, ino):
            raise DatabaseFileGone(f"the database file {path} was replaced while the daemon ran; restart the daemon "
                                   "to use the new one (scans wait in the inbox)")

    # -- the cycle's steps -------------------------------------------------------------------
    def ingest(self, now: datetime | None = None) -> IngestReport:
        """Ingest the inbox; the settle time applies to every file not announced by an event."""
        s = self.settings
        return ingest_inbox(self.sessions, inbox=s.inbox, home=s.home, archive=s.archive, quarantine=s.quarantine,
                            now=now, settle_seconds=s.settle_seconds,
                            future_tolerance=timedelta(minutes=s.future_tolerance_min),
                            incomplete_grace_s=s.incomplete_grace_s, earliest=s.earliest_scan_time,
                            quality=QualityThresholds.from_settings(s), ready=self.announced.take())

    def warm_up(self) -> None:
        """Load the production forecaster and the baselines and run each once on a dry input, so that
        nothing slow (model loading, graph tracing, imports) is left for the first scan."""
        forecasters = [self.production_forecaster()[0]]
        forecasters += [self._baseline(m) for m in self.settings.baselines if m != forecasters[0].name]
        for forecaster in forecasters:
            for n in (1, 2):  # one issue time and a batch: both traced once (RainNet's graph)
                forecaster.forecast(np.zeros((n, N_INPUTS, *GRID_SHAPE), np.float32))

    def production_forecaster(self) -> tuple[Forecaster, str]:
        with self.sessions() as session:
            choice = resolve(session, self.settings.home, self.settings.method, self.settings.model)
        return self.production.get(choice)

    def forecast(self, *, production: bool = True, method: str | None = None, progress=None) -> ForecastSummary:
        """Forecast every pending issue time with the production forecaster or a baseline."""
        summary = self._forecast(production=production, method=method, progress=progress)
        if production:  # the ensembles of the new production runs, then their alert levels
            self.forecast_ensembles()
            self.update_alerts()
        return summary

    # -- probabilistic nowcasts ----------------------------------------------------------------
    def production_ensemble(self, centre_method: str):
        """The production ensemble centred on ``centre_method`` (loaded once per method)."""
        from nowcast_core.ensembles.perturbed import CentredEnsemble, Perturbations

        key = f"ensemble:{centre_method}"
        if key not in self._ensembles:
            s = self.settings
            calibration = Perturbations.load(s.ensemble_calibration) if s.ensemble_calibration else None
            # Centred on the stored production field: the centre forecaster itself is never run here.
            self._ensembles[key] = CentredEnsemble(s.ensemble_members, s.ensemble_seed, centre_method, calibration)
        return self._ensembles[key]

    def forecast_ensembles(self) -> int:
        """The production ensemble of every production run without one (a failure is retried next cycle)."""
        from nowcast_core.cycle.ensembles import production_ensembles

        if not self.settings.ensembles:
            return 0
        try:
            ids = production_ensembles(self.sessions, lambda run: self.production_ensemble(run.method), dams=self.dams,
                                       forecasts_dir=self.settings.forecasts, archive=self.settings.archive,
                                       lookback=self.settings.lookback,
                                       reference=self.reference_ensemble(),
                                       max_runs=self.settings.ensemble_max_per_cycle)
        except Exception:
            log.exception("production ensembles failed; the next cycle retries (alert levels fall back to the "
                          "deterministic forecast meanwhile)")
            return 0
        return len(ids)

    def reference_ensemble(self):
        """The reference ensemble (loaded once); None when none is configured."""
        from nowcast_core.ensembles import get_ensemble

        s = self.settings
        if not s.reference_ensemble:
            return None
        key = f"reference:{s.reference_ensemble}"
        if key not in self._ensembles:
            self._ensembles[key] = get_ensemble(s.reference_ensemble, n_members=s.reference_members,
                                                seed=s.ensemble_seed)
        return self._ensembles[key]

    def forecast_reference_ensembles(self) -> ForecastSummary | None:
        """The reference ensemble (STEPS) of the newest issue times without one (the production ensemble
        stores it where its map pools the same STEPS), at most ``reference_max_per_cycle``."""
        from nowcast_core.cycle.ensembles import reference_ensembles

        s = self.settings
        if not s.ensembles or not s.reference_ensemble or s.reference_max_per_cycle <= 0:
            return None
        ensemble = self.reference_ensemble()
        t0 = datetime.now(UTC)
        ids = reference_ensembles(self.sessions, ensemble, dams=self.dams, forecasts_dir=s.forecasts, archive=s.archive,
                                  max_runs=s.reference_max_per_cycle, lookback=s.lookback,
                                  failed=self._reference_failed)
        return ForecastSummary(ensemble.name, ensemble.version, runs=len(ids),
                               seconds=(datetime.now(UTC) - t0).total_seconds())

    def update_alerts(self) -> int:
        """Store the alert level of every production run not yet assessed; queue its notifications."""
        from nowcast_core.alerts import AlertRules, update_alerts

        s = self.settings
        try:
            return update_alerts(self.sessions, self.dams, s.archive, rules=AlertRules.from_settings(s),
                                 webhooks=s.webhooks,
                                 alert_probability=s.alert_probability,
                                 notify_max_age=timedelta(minutes=s.alert_notify_max_age_min),
                                 lookback=s.lookback)
        except Exception:  # the forecast is stored; a failed assessment is retried next cycle
            log.exception("alert levels could not be assessed; the next cycle retries")
            return 0

    def disk_space(self) -> list[DiskSpace]:
        """Free space of each disk holding a state folder (``home``, ``inbox``, ...), the fullest first."""
        return disk_space(self.settings.state_folders())

    def low_disk(self, spaces: list[DiskSpace] | None = None) -> DiskSpace | None:
        """The fullest disk (of ``spaces``, default :meth:`disk_space`) when it has less than
        ``min_free_disk_gb`` free, else None."""
        limit = self.settings.min_free_disk_gb
        fullest = (spaces or self.disk_space())[0]
        return fullest if limit > 0 and fullest.free_gb < limit else None

    def disk_warning(self, now: datetime | None = None) -> str | None:
        """The daemon's warning about a disk low on space: when it first goes low, then every
        :data:`DISK_WARNING_EVERY` while it stays low; None otherwise."""
        now = now or datetime.now(UTC)
        try:
            low = self.low_disk()
        except OSError as exc:  # the forecasts are stored; a free-space reading is not worth failing the cycle
            log.debug("free disk space not read: %s", exc)
            return None
        if low is None:
            self._disk_warned_at = None
            return None
        if self._disk_warned_at is not None and now - self._disk_warned_at < DISK_WARNING_EVERY:
            return None
        self._disk_warned_at = now
        return (f"low disk space: {low.free_gb:.1f} GB free on the disk of {', '.join(low.folders)} "
                f"(NOWCAST_MIN_FREE_DISK_GB {self.settings.min_free_disk_gb:g}); a full disk stops archiving "
                f"and forecasting (scans then wait in the inbox): free or add space")

    def prune(self, *, keep_days: float | None = None, max_runs: int | None = PRUNE_MAX_RUNS,
              dry_run: bool = False) -> PruneReport | None:
        """Delete the forecast files of runs issued more than ``keep_days`` (default the setting) before the
        newest scan, at most ``max_runs`` runs (None: all); None when files are kept for ever (0 days)."""
        days = self.settings.keep_forecast_files_days if keep_days is None else keep_days
        if not days:
            return None
        try:
            with self.sessions() as session:
                report = prune_forecast_files(session, self.settings.forecasts, timedelta(days=days),
                                              max_runs=max_runs, dry_run=dry_run)
        except Exception as exc:
            if not dry_run:
                with self.sessions() as session:
                    record_prune(session, None, error=f"{type(exc).__name__}: {exc}")
            raise
        if not dry_run:
            with self.sessions() as session:
                record_prune(session, report)
        return report

    def record_cycle(self, started_at: datetime, seconds: float, method: str | None = None) -> None:
        """Remember the last cycle that ran through (for status and /metrics in any process): it ends a run
        of failures (:meth:`record_cycle_failure`). ``method``: the production method its settings resolved
        to, which ``status`` run with other settings (another shell's environment) then reports."""
        from nowcast_core.db.schema import ServiceState

        with self.sessions() as session:
            state = session.get(ServiceState, "last_cycle") or ServiceState(key="last_cycle")
            state.value = {"started_at": iso_utc(started_at), "duration_s": round(seconds, 3), "failures": 0,
                           **({"method": method} if method else {})}
            session.add(state)
            session.commit()

    def record_cycle_failure(self, exc: BaseException, now: datetime | None = None) -> None:
        """Count a failed cycle and keep its reason beside the last good one, so status, the page and
        /metrics show that the cycle is failing (the log alone is not watched). Best effort: where the
        database itself is what fails, status says so when it cannot read it."""
        from nowcast_core.db.schema import ServiceState

        try:
            with self.sessions() as session:
                state = session.get(ServiceState, "last_cycle") or ServiceState(key="last_cycle")
                value = dict(state.value or {})
                value.update(failures=int(value.get("failures") or 0) + 1, error=failure_reason(exc),
                             error_at=iso_utc(now or datetime.now(UTC), "seconds"))
                state.value = value
                session.add(state)
                session.commit()
        except Exception:  # noqa: BLE001 - the failure itself is logged by the caller
            log.debug("the cycle failure could not be recorded", exc_info=True)

    @staticmethod
    def last_cycle(session) -> dict:
        """What :meth:`record_cycle` and :meth:`record_cycle_failure` kept of the last cycle ({}: none yet)."""
        from nowcast_core.db.schema import ServiceState

        state = session.get(ServiceState, "last_cycle")
        return dict(state.value or {}) if state is not None else {}

    def cycle_health(self, session) -> dict:
        """``cycle_failures`` in a row since the last good cycle, and ``last_cycle_error`` (when, why)."""
        value = self.last_cycle(session)
        failures = int(value.get("failures") or 0)
        return {"cycle_failures": failures,
                "last_cycle_error": f"{value['error_at']}: {value['error']}" if failures and value.get("error") else None}

    def _forecast(self, *, production: bool, method: str | None, progress) -> ForecastSummary:
        if production:
            forecaster, note = self.production_forecaster()
        else:
            forecaster, note = self._baseline(method), ""
        max_age = timedelta(hours=self.settings.max_scan_age_h)
        with self.sessions() as session:
            if production:
                pending = cycle.pending_issue_times(session, max_age)
                if cycle.adopt_as_production(session, forecaster.name, pending.issue_times):
                    pending = cycle.pending_issue_times(session, max_age)
            else:
                pending = cycle.pending_issue_times(session, max_age, method=forecaster.name)
        summary = ForecastSummary(forecaster.name, forecaster.version, too_old=len(pending.too_old), note=note)
        if pending.too_old:
            log.debug("%d scans older than %.1f h behind the newest scan are not forecast with %s (oldest %s)",
                     len(pending.too_old), self.settings.max_scan_age_h, forecaster.name,
                     f"{iso_minutes(pending.too_old[0])}")
        if not pending.issue_times:
            return summary
        t0 = datetime.now(UTC)
        ids = cycle.forecast_and_store(self.sessions, forecaster, pending.issue_times, dams=self.dams,
                                       forecasts_dir=self.settings.forecasts, archive=self.settings.archive,
                                       is_production=production, note=note,
                                       chunk_size=self.batch_issue_times, progress=progress)
        summary.runs = len(ids)
        summary.seconds = (datetime.now(UTC) - t0).total_seconds()
        log.debug("%s: %d runs stored (%s) in %.1f s%s", "production" if production else "baseline", len(ids),
                 forecaster.name, summary.seconds, f"; {note}" if note else "")
        return summary

    def forecast_baselines(self) -> list[ForecastSummary]:
        """The baselines that are not the production method (resolved by this cycle's production step), then
        the reference ensemble of the newest issue times."""
        production_method = self.production.method or self.production_forecaster()[0].name
        summaries = [self.forecast(production=False, method=m) for m in self.settings.baselines if m != production_method]
        reference = self.forecast_reference_ensembles()
        return summaries + ([reference] if reference is not None else [])

    def verify(self) -> int:
        """Score every stored forecast whose observation has arrived."""
        from nowcast_core.verification.probabilistic_stored import verify_ensembles
        from nowcast_core.verification.stored import verify_pending

        lookback = self.settings.lookback
        with self.sessions() as session:
            n = verify_pending(session, self.settings.forecasts, self.settings.archive, self.dams, lookback=lookback)
        try:
            with self.sessions() as session:
                n_ensembles = verify_ensembles(session, self.settings.forecasts, self.settings.archive, self.dams,
                                               lookback=lookback)
        except Exception:  # the deterministic verification is stored; the next cycle retries this part
            log.exception("ensemble verification failed; the next cycle retries")
            n_ensembles = 0
        if n_ensembles:
            log.debug("ensemble verification: %d (ensemble run, lead) pairs scored", n_ensembles)
        if n:
            log.debug("verification: %d (run, lead) pairs scored", n)
        return n

    def _baseline(self, method: str | None) -> Forecaster:
        if method not in self._baselines:
            self._baselines[method] = get_method(method)
        return self._baselines[method]

    # -- what operators ask --------------------------------------------------------------------
    def newest_scan_time(self) -> datetime | None:
        with self.sessions() as session:
            return session.scalar(select(func.max(FrameRecord.scan_time)))

    def status(self) -> dict:
        with self.sessions() as session:
            last_scan = session.scalar(select(func.max(FrameRecord.scan_time)))
            last_run = session.scalar(select(ForecastRun).where(ForecastRun.is_production)
                                      .order_by(ForecastRun.issue_time.desc()).limit(1))
            choice = resolve(session, self.settings.home, self.settings.method, self.settings.model)
            counts = {
                "frames": session.scalar(select(func.count(FrameRecord.id))),
                "rejected_files": session.scalar(select(func.count(RejectedFile.id))),
                "forecast_runs": session.scalar(select(func.count(ForecastRun.id))),
                "production_runs": session.scalar(select(func.count(ForecastRun.id)).where(ForecastRun.is_production)),
            }
            arrived = (session.scalar(select(FrameRecord.arrived_at).where(FrameRecord.scan_time == last_run.issue_time))
                       if last_run else None)
            latency = round((last_run.finished_at - arrived).total_seconds(), 3) if arrived else None
            files_since = oldest_kept(session)
            pruned = last_prune(session)
            health = self.cycle_health(session)
            daemon_method = self.last_cycle(session).get("method")
        now = datetime.now(UTC)
        try:
            entries, inbox_missing = scan_inbox(self.settings.inbox), False
        except FileNotFoundError:  # deleted: said here, not a failed status (the cycle fails and says so too)
            entries, inbox_missing = [], True
        unexpected = [f"{e.shown} ({e.what})" for e in entries if e.kind == "unexpected"]
        waiting = [f"{e.shown} (modified {duration_text(now.timestamp() - e.st.st_mtime)} ago)"
                   for e in sorted((e for e in entries if e.kind in ("file", "symlink")), key=lambda e: e.st.st_mtime)]
        spaces = self.disk_space()
        return {
            "now": iso_utc(now, "seconds"),
            "last_scan": iso_utc(last_scan),
            "scan_age_minutes": round((now - last_scan).total_seconds() / 60, 1) if last_scan else None,
            "feed_stale": feed_stale(last_scan, now, self.settings.stale_scan_minutes),
            "last_forecast_issue_time": iso_utc(last_run.issue_time) if last_run else None,
            "last_forecast_method": last_run.method if last_run else None,
            "last_forecast_model_version": last_run.model_version if last_run else None,
            "last_forecast_stored_at": iso_utc(last_run.finished_at, "milliseconds") if last_run else None,
            "last_forecast_latency_s": latency,
            "forecast_lag_minutes": (round((last_scan - last_run.issue_time).total_seconds() / 60, 1)
                                     if last_run and last_scan else None),
            "method_in_use": choice.method,
            "model": str(choice.model_path) if choice.model_path else None,
            "fallback_reason": choice.note or None,
            **_method_of_the_daemon(choice.method, daemon_method),
            "last_forecast_note": (last_run.note or None) if last_run else None,
            "last_forecast_input_quality": last_run.input_quality if last_run else None,
            "inbox_missing": inbox_missing,
            "inbox_waiting": len(waiting),
            "inbox_waiting_names": _first(waiting),
            "inbox_in_transfer": sum(1 for e in entries if e.kind == "temporary"),
            "inbox_unexpected": len(unexpected),
            "inbox_unexpected_names": _first(unexpected),
            "disk_free_gb": round(spaces[0].free_gb, 1),
            "disk_free_folders": list(spaces[0].folders),
            "disk_low": self.low_disk(spaces) is not None,
            "keep_forecast_files_days": self.settings.keep_forecast_files_days,
            "forecast_files_since": iso_utc(files_since),
            "last_prune": (f"{pruned['at']}: {pruned['error'] or pruned['done'] or 'nothing to prune'}"
                           if pruned else None),
            "prune_failing": prune_failing(pruned),
            **health,
            **counts,
        }

    def close(self) -> None:
        self.engine.dispose()


class DatabaseFileGone(RuntimeError):
    """The SQLite file a running process works on was moved, deleted or replaced under it."""


def failure_reason(exc: BaseException) -> str:
    """One line on why something failed: a database driver's own message rather than SQLAlchemy's wrapper."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def feed_stale(newest_scan: datetime | None, now: datetime, stale_scan_minutes: float) -> bool:
    """Whether no scan has arrived for longer than ``stale_scan_minutes`` (or none ever)."""
    return newest_scan is None or (now - newest_scan).total_seconds() > 60 * stale_scan_minutes


def _first(names: list[str]) -> list[str]:
    """At most :data:`MAX_NAMES_SHOWN` names, and how many more there are."""
    more = len(names) - MAX_NAMES_SHOWN
    return names[:MAX_NAMES_SHOWN] + ([f"... and {more} more"] if more > 0 else [])


def _method_of_the_daemon(here: str, daemon: str | None) -> dict:
    """Where the last cycle (the daemon, with its own settings) ran another method than the settings of this
    process resolve to (a shell without the service unit's NOWCAST_METHOD): the daemon's is the one in use."""
    if daemon is None or daemon == here:
        return {}
    return {"method_in_use": daemon, "method_of_these_settings": here,
            "method_note": f"the daemon's last cycle ran {daemon}; this command's settings resolve to {here}: "
                           "they differ from the daemon's (its environment or settings file)"}
