"""The ``nowcast`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from nowcast_core.output import Format, render

app = typer.Typer(help="Precipitation nowcasting for hydro-power dams.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
err = Console(stderr=True)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "alembic.runtime.migration", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_time(value: Optional[str]) -> Optional[datetime]:
    """ISO 8601 to an aware UTC datetime (naive times are taken as UTC)."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2020-10-31T12:00Z") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _service():
    from nowcast_core.service import Service

    svc = Service.from_env()
    svc.migrate()
    return svc


FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


@app.command()
def config(fmt: FormatOpt = Format.table) -> None:
    """Print the effective settings."""
    from nowcast_core.config import load_settings

    settings = load_settings()
    rows = [{"setting": k, "value": str(v)} for k, v in settings.model_dump().items()]
    if fmt == Format.json:
        print(json.dumps(settings.model_dump(mode="json"), indent=2))
    else:
        render(rows, fmt, title="effective settings (NOWCAST_* environment, TOML file, defaults)")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database up (default: to the newest schema)."""
    from nowcast_core.config import load_settings
    from nowcast_core.db import upgrade

    settings = load_settings()
    settings.ensure_dirs()
    upgrade(settings.database_url, revision)
    err.print(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from nowcast_core.config import load_settings
    from nowcast_core.db import downgrade

    downgrade(load_settings().database_url, revision)
    err.print(f"database at {revision}")


@app.command()
def run(once: Annotated[bool, typer.Option("--once", help="run one cycle and exit")] = False,
        demo: Annotated[bool, typer.Option("--demo", help="also replay sample scans into the inbox "
                                           "(../shared/data/radar when present, else a generated sequence)")] = False,
        verbose: bool = False) -> None:
    """Run the daemon: a forecast cycle every poll interval, until SIGTERM/SIGINT."""
    from flows.daemon import run_daemon
    from nowcast_core.config import load_settings
    from nowcast_core.locks import LockHeld

    _setup_logging(verbose)
    settings = load_settings(**({"poll_interval_s": 10.0} if demo and "NOWCAST_POLL_INTERVAL_S" not in os.environ else {}))
    settings.ensure_dirs()
    if demo:
        from nowcast_core.replay import start_demo_replay

        start_demo_replay(settings)
    try:
        raise typer.Exit(run_daemon(settings, once=once))
    except LockHeld as exc:
        err.print(f"[red]another daemon is running on this home: {exc}[/red]")
        raise typer.Exit(1) from None


@app.command()
def replay(folder: Path, speed: Annotated[float, typer.Option(help="times faster than real time (0: no waiting)")] = 60.0,
           inbox: Optional[Path] = None) -> None:
    """Copy FOLDER's scans into the inbox in time order, SPEED times faster than real time."""
    from nowcast_core.config import load_settings
    from nowcast_core.replay import replay_folder

    _setup_logging()
    settings = load_settings()
    target = inbox or settings.inbox
    n = replay_folder(folder, target, speed=speed)
    err.print(f"{n} scans replayed into {target}")


@app.command()
def sample(out: Path, scans: int = 36, seed: int = 0,
           start: Annotated[Optional[str], typer.Option(help="first scan time, ISO 8601 UTC")] = None) -> None:
    """Write a synthetic sample sequence (moving, growing and decaying rain cells) to OUT."""
    from nowcast_core.sample import write_sequence

    kwargs = {"n_scans": scans, "seed": seed}
    if start:
        kwargs["start"] = parse_time(start)
    paths = write_sequence(out, **kwargs)
    err.print(f"{len(paths)} sample scans written to {out}")


@app.command()
def forecasts(dam: Optional[str] = None, issue_time: Annotated[Optional[str], typer.Option(help="ISO 8601")] = None,
              since: Optional[str] = None, until: Optional[str] = None,
              method: Annotated[Optional[str], typer.Option(help="a stored method; default the production runs")] = None,
              fmt: FormatOpt = Format.table) -> None:
    """Dam rainfall forecasts (default: the latest production run)."""
    from nowcast_core.queries import forecast_rows

    svc = _service()
    with svc.sessions() as session:
        rows = forecast_rows(session, dam=dam, issue_time=parse_time(issue_time), since=parse_time(since),
                             until=parse_time(until), method=method)
    render(rows, fmt, title="dam rainfall forecasts")


@app.command()
def frames(rejected: Annotated[bool, typer.Option("--rejected", help="quarantined files and reasons")] = False,
           fmt: FormatOpt = Format.table) -> None:
    """Registered scans, or the rejected files with their reasons."""
    from nowcast_core.queries import frame_rows

    svc = _service()
    with svc.sessions() as session:
        rows = frame_rows(session, rejected=rejected)
    render(rows, fmt, title="rejected files" if rejected else "registered scans")


@app.command()
def export(out: Annotated[Path, typer.Option("--out", help="FILE.npz")], since: Optional[str] = None,
           until: Optional[str] = None, method: Optional[str] = None) -> None:
    """Write stored forecast fields to an .npz: issue_times and rain_rate_mm_h (n x 6 x 120 x 120)."""
    import numpy as np

    from nowcast_core.queries import export_fields

    svc = _service()
    with svc.sessions() as session:
        issue_times, rain = export_fields(session, svc.settings.forecasts, since=parse_time(since),
                                          until=parse_time(until), method=method)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, issue_times=np.array(issue_times, dtype=str), rain_rate_mm_h=rain)
    err.print(f"{len(issue_times)} forecasts written to {out}")


@app.command()
def status(fmt: FormatOpt = Format.table) -> None:
    """Last scan, last forecast, lag, counts and the method in use."""
    svc = _service()
    info = svc.status()
    if fmt == Format.json:
        print(json.dumps(info, indent=2))
    else:
        render([{"item": k, "value": v} for k, v in info.items()], fmt, title="nowcast status")


@app.command()
def verify() -> None:
    """Score every stored forecast whose observed scan has arrived (once)."""
    _setup_logging()
    svc = _service()
    err.print(f"{svc.verify()} (run, lead) pairs verified")


class By(str, Enum):
    lead = "lead"
    dam = "dam"
    method = "method"


@app.command()
def skill(since: Optional[str] = None, until: Optional[str] = None, by: By = By.lead, fmt: FormatOpt = Format.table,
          plot: Annotated[Optional[Path], typer.Option(help="draw CSI and MAE against lead to FILE.png")] = None) -> None:
    """Verified skill from stored counts: MAE, CSI/POD/FAR at 0.1, 1, 5, 10 mm/h."""
    from nowcast_core.skill import skill_rows

    svc = _service()
    with svc.sessions() as session:
        rows = skill_rows(session, since=parse_time(since), until=parse_time(until), by=by.value)
    if plot is not None:
        from nowcast_core.plots import plot_skill

        lead_rows = rows if by == By.lead else skill_rows_by_lead(svc, since, until)
        plot_skill(lead_rows, plot)
        err.print(f"skill plot written to {plot}")
    if fmt == Format.json:
        print(json.dumps(rows, indent=2))
        return
    flat = [{k: (" ".join(f"{t}:{v}" for t, v in val.items()) if isinstance(val, dict) else val)
             for k, val in row.items()} for row in rows]
    render(flat, fmt, title=f"verified skill by {by.value}")


def skill_rows_by_lead(svc, since, until):
    from nowcast_core.skill import skill_rows

    with svc.sessions() as session:
        return skill_rows(session, since=parse_time(since), until=parse_time(until), by="lead")


def main() -> None:  # pragma: no cover
    app()
