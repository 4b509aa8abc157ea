"""The ``nowcast`` command line (see the README for every command and its exit codes)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from nowcast_app.errors import CliError, usage_error
from nowcast_app.errors import run as run_app
from nowcast_app.logs import setup_logging
from nowcast_app.output import Format, render

app = typer.Typer(help="Precipitation nowcasting for hydro-power dams.", no_args_is_help=True,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")
err = Console(stderr=True, soft_wrap=True)  # messages: the terminal folds them, a log file keeps whole lines

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging and tracebacks")]
#: A folder that must exist (checked by the parser: a typo is a usage error, exit 2).
ExistingFolder = Annotated[Path, typer.Argument(exists=True, file_okay=False, dir_okay=True, readable=True)]


@app.callback()
def _global_options(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging, and the traceback "
                                                          "of an unexpected error")] = False) -> None:
    """Precipitation nowcasting for hydro-power dams."""
    if verbose:
        setup_logging(verbose=True)


def parse_time(value: Optional[str], option: str = "time") -> Optional[datetime]:
    """ISO 8601 to an aware UTC datetime (naive times are taken as UTC); a usage error if malformed."""
    if value is None:
        return None
    from nowcast_core.times import parse_iso_utc

    try:
        return parse_iso_utc(value)
    except ValueError as exc:
        raise usage_error(f"{option}: {exc}") from None


def _time_range(since: Optional[str], until: Optional[str]) -> tuple[Optional[datetime], Optional[datetime]]:
    start, end = parse_time(since, "--since"), parse_time(until, "--until")
    if start is not None and end is not None and end < start:
        raise usage_error(f"--until {until} is before --since {since}", "swap them")
    return start, end


def _settings(**overrides):
    """Effective settings; a bad setting is a usage error naming it."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from nowcast_core.config import SettingsFileError, load_settings, unknown_variables

    try:
        settings = load_settings(**overrides)
    except SettingsFileError as exc:
        raise usage_error(str(exc), "fix the file (the README lists the settings), or point NOWCAST_CONFIG "
                                    "elsewhere") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(x) for x in first.get("loc", ())) or "settings"
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise usage_error(f"setting {name} ({_set_where(name)}): {message}") from None
    except SettingsError as exc:  # a list or mapping setting that is not JSON
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1) if found else "settings"
        raise usage_error(f"setting {name} ({_set_where(name)}): not valid JSON "
                          f"(a list is written [\"a\", \"b\"])") from None
    _check_names(settings)
    for line in unknown_variables():  # a typo's setting keeps its default: said once per process
        if line not in _WARNED:
            _WARNED.add(line)
            err.print(f"nowcast: warning: {line}")
    return settings


_WARNED: set[str] = set()


def _set_where(name: str) -> str:
    """Where a setting's value comes from: its environment variable, else the TOML file that has it."""
    import tomllib

    from nowcast_core.config import toml_file

    variable = f"NOWCAST_{name.upper()}"
    toml = toml_file()
    if variable not in os.environ and toml is not None:
        try:
            if name in tomllib.loads(toml.read_text()):
                return f"{name} in {toml}"
        except (OSError, ValueError):
            pass
    return variable


def _check_names(settings) -> None:
    """The methods and ensemble a setting names must exist: found now, not when the daemon first needs them."""
    from nowcast_core.ensembles import ensemble_names
    from nowcast_core.forecasters import method_names

    known = method_names()
    for name, value in [("method", settings.method)] + [("baselines", b) for b in settings.baselines]:
        if value is not None and value not in known:
            raise usage_error(f"setting {name} ({_set_where(name)}): unknown forecast method {value!r}; "
                              f"known: {', '.join(known)}")
    ensembles = ensemble_names()
    if settings.reference_ensemble and settings.reference_ensemble not in ensembles:
        raise usage_error(f"setting reference_ensemble ({_set_where('reference_ensemble')}): unknown ensemble "
                          f"{settings.reference_ensemble!r}; known: {', '.join(ensembles)} or empty for none")


def _writable_settings(**overrides):
    """Settings whose state folders exist (created now) and can be written."""
    settings = _settings(**overrides)
    try:
        settings.ensure_dirs()
    except OSError as exc:
        raise CliError(f"cannot create the nowcast home {Path(settings.home).resolve()}: "
                       f"{exc.strerror or exc}", "set NOWCAST_HOME to a folder you can write") from None
    return settings


def _service():
    """The installation, created and migrated if need be (commands that write)."""
    from nowcast_core.cycle.service import Service

    svc = Service(_writable_settings())
    svc.migrate()
    return svc


def _missing_sqlite_file(settings) -> Path | None:
    """The SQLite database file of the settings when it does not exist (None: it exists, or PostgreSQL)."""
    from nowcast_core.db.engine import sqlite_file

    path = sqlite_file(settings.database_url)
    return path if path is not None and not path.is_file() else None


def _existing_service():
    """An existing installation, never created or migrated (commands that only read)."""
    from nowcast_core.cycle.service import Service
    from nowcast_core.db.migrate import check_current

    settings = _settings()
    if (db_file := _missing_sqlite_file(settings)) is not None:
        if any(Path(settings.archive).glob("*/*/*/RDR_*.npz")):  # an installation that lost its database
            raise CliError(f"the database {db_file} is missing, but {Path(settings.archive).resolve()} holds "
                           "archived scans: it was moved or deleted",
                           "restore it from a backup (docs/DEPLOY.md), or start a new one with `nowcast run` "
                           "and register the archive again with `nowcast recover`")
        raise CliError(f"no nowcast installation at {Path(settings.home).resolve()} (no database {db_file})",
                       "set NOWCAST_HOME (or NOWCAST_DATABASE_URL) to an installation, or start one with `nowcast run`")
    check_current(settings.database_url)
    return Service(settings, create=False)


def _out_file(out: Path, option: str = "--out") -> Path:
    """An output file whose folder exists (no folders are created for a typo)."""
    folder = out.expanduser().resolve().parent
    if not folder.is_dir():
        raise usage_error(f"{option} {out}: folder {folder} does not exist", "create it first, or write elsewhere")
    return out


#: Picture formats a plot may be written in (by the file's suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _plot_file(plot: Path) -> Path:
    """A --plot file in a picture format, whose folder exists."""
    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise usage_error(f"--plot {plot}: not a picture file name", f"end it in {', '.join(PLOT_SUFFIXES)}")
    return _out_file(plot, "--plot")


def _known(value: Optional[str], known: list[str], what: str, option: str) -> None:
    if value is not None and value not in known:
        raise usage_error(f"unknown {what} {value!r} for {option}", f"known: {', '.join(known)}")


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


@app.command()
def config(fmt: FormatOpt = Format.table) -> None:
    """Print the effective settings."""
    settings = _settings()
    values = settings.model_dump(mode="json") | _resolved_production(settings)
    if fmt == Format.json:
        print(json.dumps(values, indent=2))
    else:
        render([{"setting": k, "value": "" if v is None else str(v)} for k, v in values.items()], fmt,
               title="effective settings (NOWCAST_* environment, TOML file, defaults; resolved_*: what runs)")


def _resolved_production(settings) -> dict:
    """The production method and model a cycle would use now (the registry's champion when the
    installation exists, else what a new installation registers)."""
    from nowcast_core.models.production import resolve
    from nowcast_core.rainnet import bundled_model_path

    try:
        svc = _existing_service()
    except CliError:
        bundled = bundled_model_path()
        if settings.method not in (None, "rainnet"):
            return {"resolved_method": settings.method, "resolved_model": None}
        model = settings.model or bundled
        return {"resolved_method": "rainnet" if model else "pysteps",
                "resolved_model": str(model) if model else None,
                "resolved_note": "no installation yet: the model a first start registers"}
    try:
        with svc.sessions() as session:
            choice = resolve(session, settings.home, settings.method, settings.model)
    finally:
        svc.close()
    return {"resolved_method": choice.method, "resolved_model": str(choice.model_path) if choice.model_path else None,
            "resolved_note": choice.note or None}


def _known_revision(revision: str) -> None:
    from nowcast_core.db.migrate import known_revisions

    known = known_revisions()
    if revision not in known | {"head", "base"}:
        raise usage_error(f"unknown schema revision {revision!r}; this version knows {', '.join(sorted(known))}, "
                          f"head and base")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database up (default: to the newest schema)."""
    from nowcast_core.db import upgrade

    settings = _writable_settings()
    _known_revision(revision)
    before, after = upgrade(settings.database_url, revision)
    err.print(f"database at {after}" + (f" (upgraded from {before})" if before and before != after else
                                        " (already)" if before == after else " (created)"))


@db_app.command("downgrade")
def db_downgrade(revision: str,
                 yes: Annotated[bool, typer.Option("--yes", help="confirm: a downgrade drops the tables and "
                                                   "columns newer than REVISION, with their data")] = False) -> None:
    """Migrate the database down to REVISION ('base' removes every table), with the daemon stopped."""
    from nowcast_core.cycle.locks import LockHeld, file_lock
    from nowcast_core.db import downgrade

    settings = _settings()
    _known_revision(revision)
    if not yes:
        raise usage_error(f"a downgrade to {revision} drops the data of every newer schema revision"
                          + (" (every table)" if revision == "base" else ""),
                          "back up first (docs/DEPLOY.md), then repeat with --yes")
    lock = Path(settings.home) / "daemon.lock"
    try:
        with file_lock(lock) if lock.parent.is_dir() else contextlib.nullcontext():
            before, after = downgrade(settings.database_url, revision, archive=settings.archive, home=settings.home)
    except LockHeld as exc:
        raise CliError(f"the daemon is running on this home ({exc})", "stop it first, then downgrade") from None
    err.print(f"database at {after or 'base (no tables)'}" + (f" (downgraded from {before})" if before != after else ""))


@app.command()
def run(once: Annotated[bool, typer.Option("--once", help="run one cycle and exit")] = False,
        demo: Annotated[bool, typer.Option("--demo", help="also replay a real event of ../shared/data/radar "
                                           "the model was not trained on, else (as for the shipped model, "
                                           "trained on all of them) a generated sequence")] = False,
        web: Annotated[bool, typer.Option("--web/--no-web", help="serve the web page, API and /metrics "
                                          "(NOWCAST_WEB_HOST:NOWCAST_WEB_PORT) while running")] = True,
        verbose: VerboseOpt = False) -> None:
    """Run the daemon: a forecast cycle every poll interval, until SIGTERM/SIGINT; the web page beside it."""
    from flows.daemon import run_daemon
    from nowcast_core.cycle.locks import LockHeld

    settings = _writable_settings(**({"poll_interval_s": 10.0} if demo and "NOWCAST_POLL_INTERVAL_S" not in os.environ
                                     else {}))
    setup_logging(verbose, settings.log_format)
    if demo:
        from nowcast_core.inbox.replay import start_demo_replay
        from nowcast_core.rainnet import bundled_model_path, training_events

        start_demo_replay(settings, exclude_events=set(training_events(bundled_model_path())))
    # the operators' window: webhook delivery job, web server thread
    from nowcast_app.web.server import ServeError, WebThread
    from nowcast_app.web.webhooks import delivery_job
    from nowcast_core.db import upgrade

    # The database first: unreachable, it is one clear line here, not a failed flow run; and the
    # page reads the newest schema from its first request.
    upgrade(settings.database_url)
    deliver = delivery_job(settings)
    web_thread = None
    if web and not once:
        try:
            web_thread = WebThread(settings, settings.web_host, settings.web_port)
        except ServeError as exc:
            raise usage_error(str(exc)) from None
        web_thread.start()  # logs the address to open
    try:
        code = run_daemon(settings, once=once, jobs=[("webhook delivery", deliver, settings.webhook_interval_s)])
    except LockHeld as exc:
        raise CliError(f"another daemon is running on this home: {exc}", "stop it first (one daemon per home)") from None
    finally:
        if web_thread is not None:
            web_thread.stop()
        deliver.close()
    raise typer.Exit(code)


@app.command()
def serve(host: Annotated[Optional[str], typer.Option(help="address to listen on (default NOWCAST_WEB_HOST, "
                                                      "127.0.0.1); any other than loopback needs NOWCAST_API_TOKEN")] = None,
          port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="port (default NOWCAST_WEB_PORT, 8080)")] = None) -> None:
    """Serve the dashboard, the read-only HTTP API (/api/v1, /docs) and /metrics."""
    from nowcast_app.web.server import ServeError, check_bind
    from nowcast_app.web.server import serve as serve_web

    settings = _settings()
    setup_logging(log_format=settings.log_format)
    host = host or settings.web_host
    try:
        check_bind(settings, host)
    except ServeError as exc:
        raise usage_error(str(exc)) from None
    _existing_service().close()  # read-only: never creates or upgrades an installation (a mistyped home is an error)
    try:
        serve_web(settings, host, settings.web_port if port is None else port)
    except ServeError as exc:
        raise CliError(str(exc)) from None


@app.command()
def replay(folder: ExistingFolder,
           speed: Annotated[float, typer.Option(min=0, help="times faster than real time (0: no waiting)")] = 60.0,
           inbox: Optional[Path] = None) -> None:
    """Copy FOLDER's scans into the inbox in time order, SPEED times faster than real time."""
    from nowcast_core.inbox.replay import replay_folder

    setup_logging()
    target = inbox or _writable_settings().inbox
    n = replay_folder(folder, target, speed=speed)
    if n == 0:
        raise CliError(f"no scan file (RDR_YYYYMMDDHHMM.npz) in {folder}")
    err.print(f"{n} scans replayed into {target}")


@app.command()
def sample(out: Path, scans: int = 36, seed: int = 0,
           start: Annotated[Optional[str], typer.Option(help="first scan time, ISO 8601 UTC")] = None) -> None:
    """Write a synthetic sample sequence (moving, growing and decaying rain cells) to OUT."""
    from nowcast_core.io.sample import write_sequence

    kwargs = {"n_scans": scans, "seed": seed}
    if start:
        kwargs["start"] = parse_time(start)
    _out_file(out, "OUT")  # OUT itself may be new, the folder it goes in must exist
    paths = write_sequence(out, **kwargs)
    err.print(f"{len(paths)} sample scans written to {out}")


#: Keys of `nowcast forecasts` left out of the table (too wide for a terminal); JSON and CSV keep them.
_FORECASTS_TABLE_LEFT_OUT = ("valid_time", "wet_fraction", "depth_mm", "model_version", "stored_at", "ensemble",
                             "accum_mm_p10")


#: What a narrow terminal keeps first of `frames`, `alerts`, `skill` (and `evaluate`) and `models list`.
_FRAMES_PRIORITY = ["scan_time", "quality", "mean_mm_h", "arrived_at", "wet_fraction", "nodata_fraction"]
_ALERTS_PRIORITY = ["dam", "level", "probability", "reason", "issue_time", "forecast_1h_mm", "total_3h_mm"]
_SKILL_PRIORITY = ["method", "lead_minutes", "dam", "mae_mm_h", "mean_forecast_mm_h", "mean_observed_mm_h", "n_forecasts",
                   "csi_1", "csi_5", "csi_10", "area_ratio_5", "fss_5_5km", "fss_1_5km", "csi_0.1", "pod_1", "far_1",
                   "pod_5", "far_5"]
#: What a narrow terminal keeps of `nowcast skill --probabilistic` first: the scores, then the counts.
_PROBABILISTIC_SKILL_PRIORITY = ["method", "lead_minutes", "dam", "threshold_mm_h", "brier", "brier_reliability", "roc_area",
                                 "crps_accum_mm", "n_runs", "n_dam_accumulations"]
_MODELS_PRIORITY = ["id", "version", "role", "decision", "reason", "created", "promoted_at"]
#: What a narrow terminal keeps of `nowcast forecasts` first: when, where, how much, how likely.
_FORECASTS_PRIORITY = ["issue_time", "dam", "lead_minutes", "accum_mm", "prob_accum_ge", "mean_mm_h", "prob_rate_ge",
                       "alert", "input_quality", "accum_mm_p50", "accum_mm_p90", "max_mm_h", "method"]


@app.command()
def forecasts(dam: Optional[str] = None, issue_time: Annotated[Optional[str], typer.Option(help="ISO 8601")] = None,
              since: Optional[str] = None, until: Optional[str] = None,
              method: Annotated[Optional[str], typer.Option(help="a forecast method; default the production runs")] = None,
              fmt: FormatOpt = Format.table) -> None:
    """Dam rainfall forecasts (default: the latest production run)."""
    from nowcast_core.db.queries import forecast_rows
    from nowcast_core.forecasters import method_names

    start, end = _time_range(since, until)
    at = parse_time(issue_time, "--issue-time")
    _known(method, method_names(), "method", "--method")
    svc = _existing_service()
    _known(dam, [d.id for d in svc.dams], "dam", "--dam")
    with svc.sessions() as session:
        rows = forecast_rows(session, dam=dam, issue_time=at, since=start, until=end, method=method)
    if fmt == Format.table:
        rows = [{k: v for k, v in r.items() if k not in _FORECASTS_TABLE_LEFT_OUT} for r in rows]
    render(rows, fmt, title="dam rainfall forecasts: accum_mm = catchment rain from the issue time to the lead (mm); "
           "prob_accum_ge N = P(accum_mm >= N mm); prob_rate_ge N = P(catchment-mean rate at the lead >= N mm/h); "
           "alert = deterministic depth flag of the lead (the alert level is `nowcast alerts`); JSON and CSV carry "
           "every key", priority=_FORECASTS_PRIORITY)


@app.command()
def alerts(dam: Annotated[Optional[str], typer.Option(help="one dam (its id, e.g. dam-3)")] = None,
           fmt: FormatOpt = Format.table) -> None:
    """Each dam's alert level from the newest production run, and why (the 3-hour total: the observed
    last 2 hours plus the forecast hour, and the probabilities that raised it)."""
    from nowcast_core.db.queries import current_alert_rows

    svc = _existing_service()
    _known(dam, [d.id for d in svc.dams], "dam", "--dam")
    with svc.sessions() as session:
        rows = current_alert_rows(session, dam)
    render(rows, fmt, title="alert levels (newest run per dam)", priority=_ALERTS_PRIORITY)


@app.command()
def frames(rejected: Annotated[bool, typer.Option("--rejected", help="quarantined files and reasons")] = False,
           fmt: FormatOpt = Format.table) -> None:
    """Registered scans, or the rejected files with their reasons."""
    from nowcast_core.db.queries import frame_rows

    svc = _existing_service()
    with svc.sessions() as session:
        rows = frame_rows(session, rejected=rejected, archive=svc.settings.archive)
    render(rows, fmt, title="rejected files" if rejected else "registered scans",
           priority=None if rejected else _FRAMES_PRIORITY)


@app.command()
def export(out: Annotated[Path, typer.Option("--out", help="FILE.npz")], since: Optional[str] = None,
           until: Optional[str] = None, method: Optional[str] = None,
           probabilistic: Annotated[bool, typer.Option("--probabilistic", help="add thresholds_mm_h, the production "
                                                       "ensemble's exceedance_probability (n x 6 x 4 x 120 x 120; NaN "
                                                       "where an issue time has no ensemble) and ensemble_method (its "
                                                       "name per issue time, whatever --method exports)")] = False) -> None:
    """Write stored forecast fields to an .npz: issue_times and rain_rate_mm_h (n x 6 x 120 x 120)."""
    import numpy as np

    from nowcast_core.db.queries import export_fields, pruned_runs
    from nowcast_core.forecasters import method_names
    from nowcast_core.times import iso_minutes

    start, end = _time_range(since, until)
    _known(method, method_names(), "method", "--method")
    _out_file(out)
    svc = _existing_service()
    with svc.sessions() as session:
        issue_times, rain, missing = export_fields(session, svc.settings.forecasts, since=start, until=end,
                                                   method=method)
        extra = {}
        if probabilistic:
            from nowcast_core.db.queries import export_probabilities

            times, thresholds, prob, methods, missing_prob = export_probabilities(
                session, svc.settings.forecasts, since=start, until=end)
            exported = set(issue_times)
            missing += [t for t in missing_prob if t in exported]
            by_time = dict(zip(times, zip(prob, methods, strict=True), strict=True))
            exceedance = np.full(rain.shape[:2] + (len(thresholds),) + rain.shape[2:], np.nan, np.float32)
            ensemble_method = np.full(len(issue_times), "", dtype=object)
            for k, t in enumerate(issue_times):
                if t in by_time:
                    exceedance[k], ensemble_method[k] = by_time[t]
            extra = {"thresholds_mm_h": thresholds.astype(np.float64), "exceedance_probability": exceedance,
                     "ensemble_method": ensemble_method.astype(str)}
        n_pruned, newest_pruned = pruned_runs(session, since=start, until=end, method=method)
    np.savez_compressed(out, issue_times=np.array(issue_times, dtype=str), rain_rate_mm_h=rain, **extra)
    err.print(f"{len(issue_times)} forecasts written to {out}")
    if n_pruned:
        err.print(f"[yellow]note:[/yellow] {n_pruned} older runs of the period (issued up to "
                  f"{iso_minutes(newest_pruned)}) are left out: their files were deleted by the retention "
                  f"(NOWCAST_KEEP_FORECAST_FILES_DAYS); `nowcast forecasts` still has their dam results")
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        err.print(f"[yellow]warning:[/yellow] {len(missing)} files of the period are missing from "
                  f"{svc.settings.forecasts} though not pruned (deleted by hand?): "
                  + ("their issue times are left out" if not probabilistic else
                     "a missing forecast leaves its issue time out, a missing probability file leaves NaN")
                  + f": {shown}")
    if probabilistic and method is not None:
        named = sorted({m for m in extra["ensemble_method"] if m})
        err.print(f"[yellow]note:[/yellow] exceedance_probability is the production ensemble's "
                  f"({', '.join(named) or 'none stored'}), not {method}'s: only production runs get an ensemble")


@app.command()
def status(fmt: FormatOpt = Format.table) -> None:
    """Last scan, last forecast, lag, counts and the method in use."""
    svc = _existing_service()
    info = svc.status()
    if fmt == Format.json:
        print(json.dumps(info, indent=2))
    else:
        render([{"item": k, "value": v} for k, v in info.items()], fmt, title="nowcast status")


@app.command()
def recover(dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be copied; copy nothing")] = False,
            ) -> None:
    """Copy the archived scans the database does not have back into the inbox, where the daemon registers
    them again (after a database restored from an older backup, or lost); the archive stays as it is."""
    from nowcast_core.inbox.recovery import archived_not_registered, requeue

    svc = _existing_service()
    with svc.sessions() as session:
        missing = archived_not_registered(session, svc.settings.archive)
    svc.close()
    if not missing:
        err.print("every archived scan is registered: nothing to recover")
        return
    found = f"{len(missing)} archived scans are not in the database ({missing[0].name} .. {missing[-1].name})"
    if dry_run:
        err.print(f"{found}; nothing copied (--dry-run)")
        return
    copied = requeue(missing, svc.settings.inbox)
    waiting = f" ({len(missing) - len(copied)} were waiting there already)" if len(copied) < len(missing) else ""
    err.print(f"{found}; {len(copied)} copied into the inbox {svc.settings.inbox}{waiting}: the daemon registers "
              "them at its next cycle, or run `nowcast run --once`")


@app.command()
def verify() -> None:
    """Score every stored forecast whose observed scan has arrived (once)."""
    setup_logging()
    svc = _service()
    err.print(f"{svc.verify()} (run, lead) pairs verified")


@app.command()
def prune(keep_days: Annotated[Optional[float], typer.Option(
              "--keep-days", help="days of forecast files kept behind the newest scan (default "
              "NOWCAST_KEEP_FORECAST_FILES_DAYS)")] = None,
          dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be deleted; delete nothing")] = False,
          ) -> None:
    """Delete the forecast and probability files of runs issued more than --keep-days before the newest
    scan. Their dam results, alerts and verification stay; the scans in the archive are never deleted.
    The daemon does this every cycle; run it to make room at once."""
    from nowcast_core.config import retention_problem

    settings = _settings()
    if keep_days is not None and (problem := retention_problem(keep_days, settings.max_scan_age_h)):
        zero = " (0 in NOWCAST_KEEP_FORECAST_FILES_DAYS keeps every file)" if keep_days == 0 else ""
        raise usage_error(f"--keep-days {keep_days:g}: must be {problem}{zero}")
    days = settings.keep_forecast_files_days if keep_days is None else keep_days
    if not days:
        err.print("NOWCAST_KEEP_FORECAST_FILES_DAYS is 0 (keep every file): nothing deleted; "
                  "give --keep-days N to prune once")
        return
    from nowcast_core.times import iso_minutes

    report = _existing_service().prune(keep_days=days, max_runs=None, dry_run=dry_run)
    if report.before is None:
        err.print("no scan registered yet: nothing to prune")
    elif not report.runs and not report.failed:
        err.print(f"no forecast files of runs issued before {iso_minutes(report.before)} "
                  f"({days:g} days before the newest scan) left to delete")
    else:
        err.print(report.describe())
    if report.failed:
        raise typer.Exit(1)


class By(str, Enum):
    lead = "lead"
    dam = "dam"
    method = "method"


#: Structure keys of `nowcast skill` left out of the table (too wide); JSON and CSV keep them.
_SKILL_TABLE_LEFT_OUT = ("fss_1_1km", "fss_5_1km", "fss_1_15km", "area_5_forecast_px", "area_5_observed_px")


@app.command()
def skill(since: Optional[str] = None, until: Optional[str] = None, by: By = By.lead, fmt: FormatOpt = Format.table,
          plot: Annotated[Optional[Path], typer.Option(help="draw CSI and MAE against lead (with --probabilistic: the "
                                                       "reliability diagram) to FILE.png")] = None,
          probabilistic: Annotated[bool, typer.Option("--probabilistic", help="the ensembles' skill: Brier score and "
                                                      "its parts, ROC area, reliability diagram, CRPS and rank "
                                                      "histogram of the catchment accumulation")] = False) -> None:
    """Verified skill from stored counts and sums: MAE, CSI/POD/FAR at 0.1, 1, 5, 10 mm/h and (by lead or
    method) FSS at 1 and 5 mm/h over 1, 5, 15 km and the area at 5 mm/h, forecast against observed (the
    table leaves out FSS over 1 km, FSS at 1 mm/h over 15 km and the areas; JSON and CSV have every key);
    with --probabilistic, the production ensemble beside the reference STEPS."""
    from nowcast_core.verification.stored import skill_rows

    start, end = _time_range(since, until)
    if plot is not None:
        _plot_file(plot)
    svc = _existing_service()
    if probabilistic:
        from nowcast_core.verification.probabilistic_stored import (
            probabilistic_skill_rows,
            reliability_counts,
            verified_runs,
            without_lists,
        )

        with svc.sessions() as session:
            rows = probabilistic_skill_rows(session, since=start, until=end, by=by.value)
            counts = reliability_counts(session, since=start, until=end) if plot is not None else {}
            runs = verified_runs(session, since=start, until=end) if plot is not None else {}
        if plot is not None and not counts:
            err.print(f"no verified ensemble runs in this period: no diagram written to {plot}")
        elif plot is not None:
            from nowcast_core.plots import plot_reliability

            few = 10  # pixels of one run are one weather situation: a handful of runs is not a verdict
            plot_reliability(counts, plot, labels={m: f"{m}, {n} runs" + (" (too few to judge)" if n < few else "")
                                                   for m, n in runs.items()},
                             title="runs differ between methods: the reference runs only for the newest issue "
                                   "times of each cycle" if len(set(runs.values())) > 1 else "")
            err.print(f"reliability diagram written to {plot}")
        if fmt == Format.table:  # the diagram and histogram are for JSON; the table stays readable
            rows = without_lists(rows)
        render(rows, fmt, title=f"probabilistic skill by {by.value}", priority=_PROBABILISTIC_SKILL_PRIORITY)
        return
    with svc.sessions() as session:
        rows = skill_rows(session, since=start, until=end, by=by.value)
        lead_rows = rows if by == By.lead else skill_rows(session, since=start, until=end, by="lead")
    if plot is not None and not lead_rows:
        err.print(f"no verified forecasts in this period: no plot written to {plot}")
    elif plot is not None:
        from nowcast_core.plots import plot_skill

        plot_skill(lead_rows, plot)
        err.print(f"skill plot written to {plot}")
    if fmt == Format.table:
        rows = [{k: v for k, v in r.items() if k not in _SKILL_TABLE_LEFT_OUT} for r in rows]
    render(rows, fmt, title=f"verified skill by {by.value}", priority=_SKILL_PRIORITY)


models_app = typer.Typer(help="The model registry: candidates, champion, promotion, rollback.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(fmt: FormatOpt = Format.table) -> None:
    """Every known model, oldest first, with its decision and metrics."""
    from nowcast_core.models import registry
    from nowcast_core.rainnet import bundled_model_path

    svc = _existing_service()
    with svc.sessions() as session:
        registry.ensure_bundled_registered(session, bundled_model_path(), svc.settings.home)
        rows = [registry.model_row(r, svc.settings.home) for r in registry.list_models(session)]
    if fmt == Format.json:
        print(json.dumps(rows, indent=2))
        return
    render([_model_summary(r) for r in rows], fmt, title="models (full metrics: --format json)",
           priority=_MODELS_PRIORITY)


def _model_summary(row: dict) -> dict:
    """A registry entry for a table: its decision and the promotion scores of the retraining."""
    m = row["metrics"] or {}

    def scores(key: str) -> str:
        if "challenger" not in m:
            return ""
        return " / ".join(f"{m[who].get(key, float('nan')):.3f}" for who in ("challenger", "champion", "pysteps"))

    span = f"{row['data_start'] or ''} .. {row['data_end'] or ''}" if row["data_start"] else ""
    return {"id": row["id"], "created": row["created"][:19] + "Z", "version": row["version"], "role": row["role"],
            "decision": row["decision"], "csi_1_mean new/champion/pysteps": scores("csi_1_mean"),
            "mae_mm_h_mean new/champion/pysteps": scores("mae_mm_h_mean"), "data": span, "reason": row["reason"]}


@models_app.command("promote")
def models_promote(model_id: int) -> None:
    """Make model ID the champion (the running daemon picks it up at its next cycle)."""
    from nowcast_core.db.schema import ModelRecord
    from nowcast_core.models import registry
    from nowcast_core.times import iso_minutes

    svc = _service()
    with svc.sessions() as session:
        record = session.get(ModelRecord, model_id)
        if record is None:
            raise CliError(f"no model with id {model_id}", "`nowcast models list` shows the ids")
        problem = registry.verify_model_file(record, svc.settings.home)
        if problem:
            raise CliError(f"refusing to promote: {problem}")
        registry.promote(session, record, f"promoted by hand on {iso_minutes(datetime.now(UTC))}")
        session.commit()
        err.print(f"model {record.id} ({record.version}) is the champion")


@models_app.command("rollback")
def models_rollback() -> None:
    """Retire the champion and restore the previous one."""
    from nowcast_core.models import registry

    svc = _service()
    with svc.sessions() as session:
        try:
            restored = registry.rollback(session)
        except LookupError as exc:
            raise CliError(str(exc)) from None
        session.commit()
        err.print(f"model {restored.id} ({restored.version}) is the champion again")


@app.command()
def retrain(epochs: Annotated[Optional[int], typer.Option(help="fine-tuning epochs (default: setting)")] = None,
            extra_folder: Annotated[Optional[list[Path]], typer.Option(
                "--extra-folder", help="folder of scans added to the training part (repeatable)")] = None,
            fmt: FormatOpt = Format.table) -> None:
    """Fine-tune a challenger on the archive; promote it only if it beats the champion."""
    from flows.embedded import configure

    setup_logging()
    for folder in extra_folder or []:
        if not folder.is_dir():
            raise usage_error(f"--extra-folder {folder}: no such folder")
    settings = _service().settings  # created and migrated
    configure(settings.home, settings.prefect_startup_timeout_s)
    from flows.retrain import retrain as retrain_flow

    try:
        entry = retrain_flow(epochs=epochs, extra_folders=[str(f) for f in extra_folder] if extra_folder else None)
    except (ValueError, LookupError) as exc:
        raise CliError(f"retraining not possible: {exc}") from None
    if "skipped" in entry:
        raise CliError(entry["skipped"])
    if fmt == Format.json:
        print(json.dumps(entry, indent=2))
    else:
        render([_model_summary(entry)], fmt, title="retraining candidate (full metrics: --format json)")


@app.command()
def train(folders: Annotated[list[Path], typer.Argument(exists=True, file_okay=False)], out: Annotated[Path, typer.Option("--out", help="MODEL.keras")],
          recipe: Annotated[Optional[str], typer.Option(help="a named recipe (shipped: how the bundled model was trained; recursive: the model bundled before it); options given override it")] = None,
          width: Annotated[Optional[int], typer.Option(help="RainNet base filters (64: the paper's 31.4 M parameters) [16]")] = None,
          epochs: Annotated[Optional[int], typer.Option(help="one-step epochs [15]")] = None,
          unroll_epochs: Annotated[Optional[int], typer.Option(help="multi-step epochs [0]")] = None,
          smoothing: Annotated[Optional[float], typer.Option(help="conditioning smoothing, pixels per lead [0]")] = None,
          rain_mae_weight: Annotated[Optional[float], typer.Option(help="weight of the MAE (mm/h) loss term [0]")] = None,
          fss_weight: Annotated[Optional[float], typer.Option(help="weight of the 1 - FSS loss term at 1 and 5 mm/h [0]")] = None,
          probability_matching: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="intensity matching of the forecast to the newest scan, 0..1 [0]")] = None,
          matching_smoothing: Annotated[Optional[float], typer.Option(min=0.0, help="smoothing of the matching's reference (the newest scan), pixels per lead [0]")] = None,
          max_samples_per_folder: Annotated[Optional[int], typer.Option(min=1, help="at most this many samples per folder, evenly spread")] = None,
          seed: Annotated[Optional[int], typer.Option(help="random seed [42]")] = None,
          val_events: Annotated[str, typer.Option(help="comma-separated events held out (folder name without -wK)")] = "",
          competition: Annotated[Optional[list[Path]], typer.Option(help="competition train_*.npy files")] = None,
          plain: Annotated[bool, typer.Option("--plain", help="the paper's 4-scan RainNet, no optical-flow conditioning")] = False,
          register: Annotated[bool, typer.Option(help="add the model to the registry as a candidate")] = False) -> None:
    """Train a RainNet on folders of archived scans; writes MODEL.keras and MODEL.report.json."""
    from nowcast_core.rainnet.recipes import RECIPES, get_recipe
    from nowcast_core.rainnet.train import report_path_for, train_from_folders

    setup_logging()
    _out_file(out)
    if recipe is not None:
        _known(recipe, sorted(RECIPES), "recipe", "--recipe")
    settings = get_recipe(recipe) if recipe else {}
    given = {"base_filters": width, "epochs": epochs, "unroll_epochs": unroll_epochs, "smoothing_px_per_lead": smoothing,
             "rain_mae_weight": rain_mae_weight, "fss_weight": fss_weight, "probability_matching": probability_matching,
             "matching_smoothing_px_per_lead": matching_smoothing, "max_samples_per_folder": max_samples_per_folder, "seed": seed}
    settings.update({k: v for k, v in given.items() if v is not None})
    if val_events:
        settings["val_events"] = [e for e in val_events.split(",") if e]
    try:
        history = train_from_folders(folders, out, conditioning=not plain, competition_files=competition or (),
                                     **settings)
    except ValueError as exc:
        raise CliError(f"training not possible: {exc}") from None
    width = settings.get("base_filters", 16)
    members = settings.get("members", 1)
    trained = f"{members} networks of {len(history['epochs']) // members} epochs" if members > 1 \
        else f"{len(history['epochs'])} epochs"
    err.print(f"model written to {out}, report to {report_path_for(out)} ({trained})")
    if register:
        from nowcast_core.models import registry

        svc = _service()
        with svc.sessions() as session:
            record = registry.register_model(session, out, home=svc.settings.home, decision="pending",
                                             reason="trained by hand",
                                             base_filters=width, n_params=history.get("parameters"))
            session.commit()
            err.print(f"registered as model {record.id} ({record.version}); `nowcast models promote {record.id}`")


class Method(str, Enum):
    rainnet = "rainnet"
    pysteps = "pysteps"
    persistence = "persistence"


def _forecaster(method: str, model: Optional[Path]):
    """A forecaster by name; rainnet uses MODEL, else the champion (or, with no installation, the bundled model)."""
    from nowcast_core.forecasters import get_method, method_names

    _known(method, method_names(), "method", "--method(s)")
    if method != "rainnet":
        return get_method(method)
    if model is None:
        resolved = _resolved_production(_settings(method="rainnet"))
        if resolved["resolved_method"] != "rainnet":
            raise CliError(f"no RainNet model: {resolved.get('resolved_note')}", "pass --model FILE.keras")
        model = Path(resolved["resolved_model"])
    elif not model.is_file():
        raise usage_error(f"--model {model}: no such file")
    try:
        return get_method("rainnet", model_path=model)
    except ValueError as exc:
        raise CliError(f"cannot load the model {model}: {exc}") from None


def _no_windows(folder: Path) -> CliError:
    n = len(list(folder.glob("RDR_*.npz")))
    return CliError(f"no forecast start in {folder}: {n} scan files, none with its three predecessors "
                    "(scans 10 minutes apart)" if n else f"no scan file (RDR_YYYYMMDDHHMM.npz) in {folder}")


def _exceedance(folder: Path, issue_times, rain, centre_method: str, members: Optional[int], seed: Optional[int]) -> dict:
    """The production ensemble around ``rain`` (the forecasts of FOLDER): thresholds and exceedance probabilities."""
    import numpy as np

    from nowcast_core.contract import THRESHOLDS_MM_H
    from nowcast_core.ensembles.perturbed import CentredEnsemble, Perturbations
    from nowcast_core.ensembles.products import exceedance_probability
    from nowcast_core.io.sequences import folder_sequences

    settings = _settings()
    try:
        calibration = Perturbations.load(settings.ensemble_calibration) if settings.ensemble_calibration else None
    except (FileNotFoundError, ValueError) as exc:
        raise usage_error(f"setting ensemble_calibration: {exc}") from None
    ensemble = CentredEnsemble(members or settings.ensemble_members, settings.ensemble_seed if seed is None else seed,
                               centre_method, calibration)
    _, inputs, _ = folder_sequences(folder)
    def probability(k: int, t) -> np.ndarray:
        x = inputs[k:k + 1]
        steps = ensemble.steps_members(x, issue_times=[t])
        return exceedance_probability(ensemble.members(x, issue_times=[t], centre_mm_h=rain[k:k + 1])[0],
                                      THRESHOLDS_MM_H, ensemble.probability_map, None if steps is None else steps[0])

    prob = np.stack([probability(k, t) for k, t in enumerate(issue_times)])
    err.print(f"exceedance probabilities of {ensemble.name} ({ensemble.version})")
    return {"thresholds_mm_h": np.asarray(THRESHOLDS_MM_H, np.float64), "exceedance_probability": prob.astype(np.float32)}


@app.command()
def predict(folder: ExistingFolder, out: Annotated[Path, typer.Option("--out", help="FILE.npz")],
            method: Method = Method.rainnet, model: Optional[Path] = None,
            plot: Annotated[Optional[Path], typer.Option(help="draw one issue time's inputs and leads to FILE.png")] = None,
            plot_issue_time: Annotated[Optional[str], typer.Option(help="the issue time --plot draws (ISO 8601; "
                                                                   "default the last)")] = None,
            probabilistic: Annotated[bool, typer.Option("--probabilistic", help="add thresholds_mm_h and the ensemble's "
                                                        "exceedance_probability (n x 6 x 4 x 120 x 120)")] = False,
            members: Annotated[Optional[int], typer.Option(help="ensemble members (default NOWCAST_ENSEMBLE_MEMBERS)",
                                                           min=2, max=255)] = None,
            seed: Annotated[Optional[int], typer.Option(help="ensemble seed (default NOWCAST_ENSEMBLE_SEED)",
                                                        min=0)] = None) -> None:
    """Forecast from every scan in FOLDER that has its three predecessors."""
    import numpy as np

    from nowcast_core.forecasters.batch import predict_folder
    from nowcast_core.times import iso_utc

    _out_file(out)
    if plot is not None:
        _plot_file(plot)
    if not probabilistic and (members is not None or seed is not None):
        raise usage_error("--members and --seed set the ensemble of --probabilistic", "add --probabilistic, or leave them out")
    wanted = parse_time(plot_issue_time, "--plot-issue-time")
    forecaster = _forecaster(method.value, model)
    issue_times, rain = predict_folder(folder, forecaster)
    if not issue_times:
        raise _no_windows(folder)
    if wanted is not None and wanted not in issue_times:
        raise usage_error(f"--plot-issue-time {plot_issue_time} is not an issue time of {folder}",
                          f"issue times run from {iso_utc(issue_times[0])} to {iso_utc(issue_times[-1])}")
    iso = [iso_utc(t) for t in issue_times]
    extra = {}
    if probabilistic:
        extra = _exceedance(folder, issue_times, rain, forecaster.name, members, seed)
    np.savez_compressed(out, issue_times=np.array(iso, dtype=str), rain_rate_mm_h=rain.astype(np.float32), **extra)
    err.print(f"{len(iso)} forecasts ({forecaster.name}, {forecaster.version}) written to {out}")
    if plot is not None:
        from nowcast_core.dams import load_dams
        from nowcast_core.io.sequences import folder_sequences
        from nowcast_core.plots import plot_forecast

        wanted = wanted or issue_times[-1]
        k = issue_times.index(wanted)
        _, inputs, _ = folder_sequences(folder)
        plot_forecast(inputs[k], rain[k], wanted, load_dams(_settings().dams_file), plot, forecaster.name)
        err.print(f"plot of issue time {iso_utc(wanted)} written to {plot}"
                  + ("" if plot_issue_time else " (--plot-issue-time chooses another)"))


@app.command()
def evaluate(folders: Annotated[list[Path], typer.Argument(exists=True, file_okay=False)],
             fmt: FormatOpt = Format.table, model: Optional[Path] = None,
             methods: Annotated[str, typer.Option(help="comma-separated methods (also sprog, steps-mean, "
                                                  "extrapolation-filled)")] = "rainnet,pysteps,persistence") -> None:
    """Skill per lead of forecast methods side by side on folders of scans (the JSON has every score:
    CSI/POD/FAR at 0.1, 1, 5, 10 mm/h, MAE, FSS at 1 and 5 mm/h over 1, 5, 15 km, area at 5 mm/h)."""
    from rich.progress import Progress

    from nowcast_core.dams import load_dams
    from nowcast_core.models.evaluation import evaluate_folders

    forecasters = [_forecaster(m.strip(), model) for m in methods.split(",") if m.strip()]
    if not forecasters:
        raise usage_error("--methods names no method")
    pixels = [d.pixel for d in load_dams(_settings().dams_file)]
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(folders))
        rows = evaluate_folders(folders, forecasters, pixels, progress=lambda _f: progress.advance(task))
    if not rows or not any(r["n_forecasts"] for r in rows):
        raise CliError(f"no forecast start (4 scans and the 6 after them, 10 minutes apart) in {len(folders)} folder(s)")
    if fmt == Format.table:
        keep = ("method", "lead_minutes", "n_forecasts", "csi_0.1", "csi_1", "csi_5", "csi_10", "pod_1", "far_1",
                "mae_mm_h", "fss_1_5km", "fss_5_5km", "fss_5_15km", "area_ratio_5", "competition_score")
        rows = [{k: r.get(k) for k in keep} for r in rows]
    render(rows, fmt, title="skill per lead (counts pooled over all forecast starts)", priority=_SKILL_PRIORITY)


@app.command()
def deploy(work_pool: Annotated[str, typer.Option(envvar="NOWCAST_WORK_POOL",
                                                  help="process work pool of the forecast cycle and verification")] = "nowcast",
           training_pool: Annotated[str, typer.Option(envvar="NOWCAST_TRAINING_POOL",
                                                      help="process work pool of retraining (a GPU machine)")] = "nowcast-training",
           name: Annotated[str, typer.Option(help="deployment name under each flow")] = "nowcast",
           verification_interval: Annotated[float, typer.Option(help="seconds between verification runs")] = 600.0,
           source: Annotated[Optional[Path], typer.Option(help="checkout the workers run the flows from "
                                                         "(same path on every worker; default: this one)")] = None,
           env: Annotated[Optional[list[str]], typer.Option("--env", help="KEY=VALUE added to every flow run's "
                                                            "environment (repeatable)")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="build and show the deployments, register nothing")] = False,
           migrate: Annotated[bool, typer.Option(help="migrate the application database first")] = True,
           fmt: FormatOpt = Format.table) -> None:
    """Register the flows as deployments on the Prefect server at $PREFECT_API_URL (see docs/DEPLOY.md)."""
    from flows.deployments import (
        REPO_DIR,
        DeployError,
        DeployOptions,
        build_deployments,
        describe,
    )
    from flows.deployments import deploy as do_deploy

    setup_logging()
    extra = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise usage_error(f"--env {item!r} is not KEY=VALUE")
        extra[key] = value
    settings = _settings()
    options = DeployOptions(work_pool=work_pool, training_pool=training_pool, name=name,
                            verification_interval_s=verification_interval, source=source or REPO_DIR, extra_env=extra)
    try:
        rows = ([describe(d) for d in build_deployments(settings, options)] if dry_run
                else do_deploy(settings, options, migrate=migrate))
    except DeployError as exc:
        raise usage_error(str(exc)) from None
    if fmt == Format.json:
        print(json.dumps(rows, indent=2))
    else:
        render(rows, fmt, title="deployments" + (" (dry run: nothing registered)" if dry_run else ""))
    if not dry_run:
        err.print(f"start workers: prefect worker start --pool {work_pool}   "
                  f"(retraining, on a GPU machine: prefect worker start --pool {training_pool})")


def main() -> None:
    """The ``nowcast`` program: exit code 0 on success, 2 for usage errors, 1 for failures."""
    raise SystemExit(run_app(app))


if __name__ == "__main__":
    main()
