"""Settings from ``NOWCAST_*`` environment variables and an optional TOML file.

Precedence: explicit arguments > environment > TOML file (``NOWCAST_CONFIG``, default
``$NOWCAST_HOME/nowcast.toml`` when present) > defaults. Paths left unset derive from
``home``: ``inbox``, ``archive``, ``quarantine``, ``forecasts`` and the SQLite database.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from nowcast_core.dams import DEFAULT_DAMS_FILE

#: The longest retention of forecast files that may be set (a century).
MAX_KEEP_DAYS = 36500


#: ``NOWCAST_*`` environment variables that are not settings but are read elsewhere.
OTHER_VARIABLES = frozenset({"NOWCAST_CONFIG", "NOWCAST_XLA", "NOWCAST_WORK_POOL", "NOWCAST_TRAINING_POOL",
                             "NOWCAST_PG_BINDIR", "NOWCAST_PG_TMPDIR"})


class SettingsFileError(ValueError):
    """The TOML settings file is missing (where ``NOWCAST_CONFIG`` names it), unreadable, not TOML, or sets
    something that is not a setting."""


def toml_file() -> Path | None:
    """The TOML settings file in effect: ``NOWCAST_CONFIG``, else ``$NOWCAST_HOME/nowcast.toml`` when present.
    Raises :class:`SettingsFileError` when ``NOWCAST_CONFIG`` names no file (it would be silently unused)."""
    explicit = os.environ.get("NOWCAST_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsFileError(f"NOWCAST_CONFIG names {path}, which is not a file")
        return path
    home = Path(os.environ.get("NOWCAST_HOME", "./var"))
    candidate = home / "nowcast.toml"
    return candidate if candidate.exists() else None


class Settings(BaseSettings):
    """Effective configuration of one nowcast installation."""

    model_config = SettingsConfigDict(env_prefix="NOWCAST_", extra="ignore", protected_namespaces=())

    home: Path = Field(Path("./var"), description="root of all state")
    inbox: Path | None = Field(None, description="folder the radar feed writes into")
    archive: Path | None = Field(None, description="dated archive of registered scans")
    quarantine: Path | None = Field(None, description="rejected files, never deleted")
    forecasts: Path | None = Field(None, description="compressed forecast fields")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite under home")
    dams_file: Path = Field(DEFAULT_DAMS_FILE, description="TOML or JSON file of dams and catchments")
    model: Path | None = Field(None, description="RainNet .keras file; default the registered champion or bundled model")
    method: str | None = Field(None, description="forecast method; default rainnet when a model exists, else pysteps")
    baselines: list[str] = Field(default_factory=lambda: ["persistence", "pysteps"],
                                 description="methods forecast beside production each cycle, for comparison")
    poll_interval_s: float = Field(60.0, gt=0, description="seconds between inbox sweeps: the safety net of the "
                                   "watcher (the sweep runs when no cycle has started for this long)")
    settle_seconds: float = Field(2.0, ge=0, description="a file found by the sweep (not announced by an inbox event) "
                                  "and modified this recently waits")
    watch: bool = Field(True, description="start a cycle as soon as a scan lands in the inbox (file-system events); "
                        "off: sweeps only, e.g. on a network file system")
    max_scan_age_h: float = Field(72.0, gt=0, description="scans older than this behind the newest registered scan are not forecast")
    future_tolerance_min: float = Field(15.0, ge=0, description="scans this far after the wall clock are rejected as future")
    incomplete_grace_s: float = Field(
        600.0, ge=0, description="a file that does not parse yet waits this long after its last change (it may still be "
                                 "arriving) before it is quarantined")
    earliest_scan_time: datetime = Field(datetime(2000, 1, 1, tzinfo=UTC),
                                         description="scans before this time (UTC) are rejected")
    max_nodata_fraction: float = Field(0.5, ge=0, le=1, description="a scan with more of its grid without coverage "
                                       "is an outage")
    max_saturated_fraction: float = Field(0.02, ge=0, le=1, description="a scan with more of its covered pixels at the "
                                          "top of the scale (p >= 250) is saturated")
    max_wet_fraction_jump: float = Field(0.6, ge=0, le=1, description="a larger change of the wet (>= 0.1 mm/h) "
                                         "fraction from the scan 10 minutes before is an impossible jump")
    max_mean_rate_jump_mm_h: float = Field(10.0, gt=0, description="a larger change of the mean rain rate from the scan "
                                           "10 minutes before is an impossible jump")
    retrain_cron: str = Field("0 3 * * 0", description="cron of the retraining flow (default weekly, Sunday 03:00 UTC)")
    log_format: Literal["text", "json"] = Field("text", description="console log lines: text, or json (one object "
                                                "per line)")
    retrain_epochs: int = Field(3, ge=1, description="fine-tuning epochs of a retraining")
    retrain_learning_rate: float = Field(3e-5, gt=0, description="learning rate of the fine-tuning")
    retrain_days: float = Field(14, gt=0, description="days of archived scans (before the newest) a retraining uses")
    retrain_extra_folders: list[Path] = Field(
        default_factory=list, description="folders of scans added to every retraining's training part (never validate)")
    retrain_max_windows: int = Field(600, ge=1, description="most training windows of a retraining (memory bound)")
    promotion_metric: str = Field("csi_1_mean", description="score a challenger must beat the champion on")
    promotion_margin: float = Field(0.01, ge=0, description="how much better a challenger must be")
    promotion_min_wet_pixels: int = Field(
        10000, ge=0, description="observed validation pixels at the score's threshold needed to promote at all")
    prefect_startup_timeout_s: int = Field(90, ge=60, description="Prefect temporary server start-up timeout")
    # --- the operators' window: web server, alerts, webhooks (issue 12) ---------------------------
    web_host: str = Field("127.0.0.1", description="address `nowcast serve` and `nowcast run` listen on")
    web_port: int = Field(8080, ge=1, le=65535, description="port of the web page, API and /metrics")
    api_token: SecretStr | None = Field(None, description="bearer token every request must carry; "
                                        "required to listen on any address but loopback")
    stale_scan_minutes: float = Field(20.0, gt=0, description="the status turns red when the newest scan is older")
    min_free_disk_gb: float = Field(5.0, ge=0, description="below this much free space (GB) on a disk holding the "
                                    "home, inbox, archive, quarantine or forecasts, status, the page, /metrics and "
                                    "the daemon's log warn (0: never)")
    keep_forecast_files_days: float = Field(
        30.0, ge=0, le=MAX_KEEP_DAYS, allow_inf_nan=False, description="forecast and probability files of runs issued longer than this before the newest scan "
        "are deleted (their dam results, alerts and verification stay in the database; 0: keep every file)")
    alert_advisory_3h_mm: float = Field(60.0, gt=0, description="advisory: observed 2 h + forecast 1 h >= this")
    alert_emergency_1h_mm: float = Field(72.0, gt=0, description="emergency: forecast 1 h >= this")
    alert_emergency_combined_1h_mm: float = Field(50.0, gt=0, description="emergency: forecast 1 h >= this ...")
    alert_emergency_combined_3h_mm: float = Field(90.0, gt=0, description="... with observed 2 h + forecast 1 h >= this")
    alert_notify_max_age_min: float = Field(
        60.0, ge=0, description="level changes of runs issued longer before the newest scan are stored, not sent")
    # --- probabilistic nowcasts (issue 11) ---------------------------------------------------------
    ensembles: bool = Field(True, description="run the production ensemble after each production run and assess "
                            "alert levels on its probabilities (off: deterministic alert levels only)")
    ensemble_members: int = Field(24, ge=2, le=255, description="members of the production ensemble")
    ensemble_seed: int = Field(42, ge=0, description="seed of the ensembles (with each issue time)")
    ensemble_calibration: Path | None = Field(None, description="perturbation calibration JSON of the production "
                                              "ensemble; default the shipped one")
    ensemble_max_per_cycle: int = Field(12, ge=1, description="production ensembles per cycle at most, newest runs "
                                        "first: after downtime the newest run gets its ensemble at once and older "
                                        "runs catch up in later cycles (about 0.8 s each)")
    reference_ensemble: str = Field("steps", description="ensemble verified beside production ('' for none)")
    reference_members: int = Field(12, ge=2, le=255, description="members of the reference ensemble")
    reference_max_per_cycle: int = Field(3, ge=0, description="reference ensembles per cycle at most, newest issue "
                                         "times first (a backlog is not held up by them)")
    alert_probability: float = Field(0.5, gt=0, le=1, description="an alert level is raised when the ensemble's "
                                     "probability of its rule reaches this")
    webhooks: list[str] = Field(default_factory=list, description="URLs that get a JSON POST per alert level change")
    webhook_timeout_s: float = Field(5.0, gt=0, description="seconds one webhook POST may take")
    webhook_backoff_s: float = Field(30.0, gt=0, description="wait after a failed POST; doubles each time, at most 1 h")
    webhook_max_attempts: int = Field(10, ge=1, description="POSTs of one notification before it is marked failed")
    webhook_interval_s: float = Field(5.0, gt=0, description="seconds between the daemon's looks into the outbox")

    @field_validator("retrain_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a crontab of five fields (minute hour day month weekday, e.g. '0 3 * * 0'): "
                             f"{exc}") from None
        return value

    @field_validator("keep_forecast_files_days")
    @classmethod
    def _keep_past_verification(cls, value: float, info: ValidationInfo) -> float:
        age_h = info.data.get("max_scan_age_h")
        if value and age_h is not None and (problem := retention_problem(value, age_h)):
            raise ValueError(f"must be 0 (keep every file) or {problem}")
        return value

    @property
    def lookback(self) -> timedelta:
        """How far behind the newest scan stored runs are still read (verification, the ensembles)."""
        return lookback_for(self.max_scan_age_h)

    @field_validator("earliest_scan_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _derive_paths(self) -> "Settings":
        home = self.home
        self.inbox = self.inbox or home / "inbox"
        self.archive = self.archive or home / "archive"
        self.quarantine = self.quarantine or home / "quarantine"
        self.forecasts = self.forecasts or home / "forecasts"
        if not self.database_url:
            self.database_url = f"sqlite:///{(home / 'nowcast.db').resolve()}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = toml_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    def state_folders(self) -> dict[str, Path]:
        """The folders that hold the installation's state, by name."""
        return {"home": self.home, "inbox": self.inbox, "archive": self.archive, "quarantine": self.quarantine,
                "forecasts": self.forecasts}

    def ensure_dirs(self) -> None:
        """Create the state folders (never touches their contents)."""
        for p in self.state_folders().values():
            Path(p).mkdir(parents=True, exist_ok=True)


def lookback_for(max_scan_age_h: float) -> timedelta:
    """Runs issued up to this far behind the newest scan are verified and given ensembles: the scans
    still forecast (``max_scan_age_h``) and the hour their leads take to be observed."""
    return timedelta(hours=max_scan_age_h + 1)


def retention_problem(keep_days: float, max_scan_age_h: float) -> str | None:
    """What a retention of ``keep_days`` (> 0) must be instead, or None when it is fine: at most
    :data:`MAX_KEEP_DAYS`, and longer than verification and the ensembles read files back."""
    if not math.isfinite(keep_days) or keep_days > MAX_KEEP_DAYS:
        return f"a number of days up to {MAX_KEEP_DAYS}"
    hours = lookback_for(max_scan_age_h).total_seconds() / 3600
    if keep_days * 24 > hours:
        return None
    return (f"more than {hours:g} h ({hours / 24:.4g} days): verification and the ensembles read the files of runs "
            f"up to NOWCAST_MAX_SCAN_AGE_H + 1 h old")


def _close(name: str, known) -> str:
    match = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {match[0]}?" if match else ""


def check_toml_file(path: Path) -> None:
    """Raise :class:`SettingsFileError` for a settings file that cannot be read, is not TOML, or sets a
    name that is not a setting (a typo there would leave the default in force without a word)."""
    try:
        names = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsFileError(f"settings file {path} cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsFileError(f"settings file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(names) - set(Settings.model_fields))
    if unknown:
        name = unknown[0]
        raise SettingsFileError(f"settings file {path}: {name!r} is not a setting{_close(name, Settings.model_fields)}")


def unknown_variables(environ=None) -> list[str]:
    """A line for each ``NOWCAST_*`` environment variable that is neither a setting nor read elsewhere
    (:data:`OTHER_VARIABLES`): most likely a typo, whose setting keeps its default."""
    environ = os.environ if environ is None else environ
    known = {f"NOWCAST_{name.upper()}" for name in Settings.model_fields} | OTHER_VARIABLES
    return [f"{name} is not a setting and is ignored{_close(name, known)}"
            for name in sorted(environ) if name.startswith("NOWCAST_") and name not in known]


def load_settings(**overrides) -> Settings:
    """Settings from the environment and TOML file, with explicit overrides; :class:`SettingsFileError` for
    a settings file that is missing, unreadable or sets an unknown name."""
    toml = toml_file()
    if toml is not None:
        check_toml_file(toml)
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
