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
    for noisy in ("httpx", "alembic", "tensorflow", "absl"):
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
        web: Annotated[bool, typer.Option("--web/--no-web", help="serve the web page, API and /metrics "
                                          "(NOWCAST_WEB_HOST:NOWCAST_WEB_PORT) while running")] = True,
        verbose: bool = False) -> None:
    """Run the daemon: a forecast cycle every poll interval, until SIGTERM/SIGINT; the web page beside it."""
    from flows.daemon import run_daemon
    from nowcast_core.config import load_settings
    from nowcast_core.locks import LockHeld

    _setup_logging(verbose)
    settings = load_settings(**({"poll_interval_s": 10.0} if demo and "NOWCAST_POLL_INTERVAL_S" not in os.environ else {}))
    settings.ensure_dirs()
    if demo:
        from nowcast_core.replay import start_demo_replay

        start_demo_replay(settings)
    # --- the operators' window (issue 12): webhook delivery job, web server thread
    from nowcast_app.web.server import ServeError, WebThread
    from nowcast_app.web.webhooks import delivery_job

    deliver = delivery_job(settings)
    web_thread = None
    if web and not once:
        from nowcast_core.db import upgrade

        upgrade(settings.database_url)  # the page reads the newest schema from its first request
        try:
            web_thread = WebThread(settings, settings.web_host, settings.web_port)
        except ServeError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        if web_thread.start():
            err.print(f"open {web_thread.url}")
    try:
        raise typer.Exit(run_daemon(settings, once=once, jobs=[("webhooks", deliver, settings.webhook_interval_s)]))
    except LockHeld as exc:
        err.print(f"[red]another daemon is running on this home: {exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        if web_thread is not None:
            web_thread.stop()
        deliver.close()


@app.command()
def serve(host: Annotated[Optional[str], typer.Option(help="address to listen on (default NOWCAST_WEB_HOST, "
                                                      "127.0.0.1); any other than loopback needs NOWCAST_API_TOKEN")] = None,
          port: Annotated[Optional[int], typer.Option(help="port (default NOWCAST_WEB_PORT, 8080)")] = None) -> None:
    """Serve the dashboard, the read-only HTTP API (/api/v1, /docs) and /metrics."""
    from nowcast_app.web.server import ServeError, check_bind, serve as serve_web
    from nowcast_core.config import load_settings

    _setup_logging()
    settings = load_settings()
    host = host or settings.web_host
    try:
        check_bind(settings, host)
    except ServeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    _service().close()  # migrate once; the web application only reads
    try:
        serve_web(settings, host, port or settings.web_port)
    except ServeError as exc:
        typer.echo(str(exc), err=True)
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


models_app = typer.Typer(help="The model registry: candidates, champion, promotion, rollback.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(fmt: FormatOpt = Format.table) -> None:
    """Every known model, oldest first, with its decision and metrics."""
    from nowcast_core import registry
    from nowcast_core.rainnet import bundled_model_path

    svc = _service()
    with svc.sessions() as session:
        registry.ensure_bundled_registered(session, bundled_model_path())
        rows = [registry.model_row(r) for r in registry.list_models(session)]
    if fmt == Format.json:
        print(json.dumps(rows, indent=2))
        return
    render([_model_summary(r) for r in rows], fmt, title="models (full metrics: --format json)")


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
            "mae_mean new/champion/pysteps": scores("mae_mean"), "data": span, "reason": row["reason"]}


@models_app.command("promote")
def models_promote(model_id: int) -> None:
    """Make model ID the champion (the running daemon picks it up at its next cycle)."""
    from nowcast_core import registry
    from nowcast_core.db.models import ModelRecord

    svc = _service()
    with svc.sessions() as session:
        record = session.get(ModelRecord, model_id)
        if record is None:
            err.print(f"[red]no model with id {model_id}[/red]")
            raise typer.Exit(1)
        problem = registry.verify_model_file(record)
        if problem:
            err.print(f"[red]refusing to promote: {problem}[/red]")
            raise typer.Exit(1)
        registry.promote(session, record, f"promoted by hand on {datetime.now(UTC):%Y-%m-%dT%H:%MZ}")
        session.commit()
        err.print(f"model {record.id} ({record.version}) is the champion")


@models_app.command("rollback")
def models_rollback() -> None:
    """Retire the champion and restore the previous one."""
    from nowcast_core import registry

    svc = _service()
    with svc.sessions() as session:
        try:
            restored = registry.rollback(session)
        except LookupError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        session.commit()
        err.print(f"model {restored.id} ({restored.version}) is the champion again")


@app.command()
def retrain(epochs: Annotated[Optional[int], typer.Option(help="fine-tuning epochs (default: setting)")] = None,
            extra_folder: Annotated[Optional[list[Path]], typer.Option(
                "--extra-folder", help="folder of scans added to the training part (repeatable)")] = None,
            fmt: FormatOpt = Format.table) -> None:
    """Fine-tune a challenger on the archive; promote it only if it beats the champion."""
    from flows.embedded import configure
    from nowcast_core.config import load_settings

    _setup_logging()
    settings = load_settings()
    settings.ensure_dirs()
    _service()  # migrate
    configure(settings.home, settings.prefect_startup_timeout_s)
    from flows.retrain import retrain as retrain_flow

    try:
        entry = retrain_flow(epochs=epochs, extra_folders=[str(f) for f in extra_folder] if extra_folder else None)
    except (ValueError, LookupError) as exc:
        err.print(f"[red]retraining not possible: {exc}[/red]")
        raise typer.Exit(1) from None
    if "skipped" in entry:
        err.print(f"[yellow]{entry['skipped']}[/yellow]")
        raise typer.Exit(1)
    if fmt == Format.json:
        print(json.dumps(entry, indent=2))
    else:
        render([_model_summary(entry)], fmt, title="retraining candidate (full metrics: --format json)")


@app.command()
def train(folders: list[Path], out: Annotated[Path, typer.Option("--out", help="MODEL.keras")],
          width: Annotated[int, typer.Option(help="RainNet base filters (64: the paper's 31.4 M parameters)")] = 16,
          epochs: int = 15, unroll_epochs: int = 0,
          val_events: Annotated[str, typer.Option(help="comma-separated events held out (folder name without -wK)")] = "",
          competition: Annotated[Optional[list[Path]], typer.Option(help="competition train_*.npy files")] = None,
          plain: Annotated[bool, typer.Option("--plain", help="the paper's 4-scan RainNet, no optical-flow conditioning")] = False,
          register: Annotated[bool, typer.Option(help="add the model to the registry as a candidate")] = False) -> None:
    """Train a RainNet on folders of archived scans; writes MODEL.keras and MODEL.report.json."""
    from nowcast_core.rainnet.train import report_path_for, train_from_folders

    _setup_logging()
    history = train_from_folders(folders, out, base_filters=width, epochs=epochs, unroll_epochs=unroll_epochs,
                                 val_events=[e for e in val_events.split(",") if e], conditioning=not plain,
                                 competition_files=competition or ())
    err.print(f"model written to {out}, report to {report_path_for(out)} ({len(history['epochs'])} epochs)")
    if register:
        from nowcast_core import registry

        svc = _service()
        with svc.sessions() as session:
            record = registry.register_model(session, out, decision="pending", reason="trained by hand",
                                             base_filters=width, n_params=history.get("parameters"))
            session.commit()
            err.print(f"registered as model {record.id} ({record.version}); `nowcast models promote {record.id}`")


class Method(str, Enum):
    rainnet = "rainnet"
    pysteps = "pysteps"
    persistence = "persistence"


def _forecaster(method: str, model: Optional[Path]):
    """A forecaster by name; rainnet uses MODEL, else the champion / bundled model."""
    from nowcast_core.forecasters import get_method

    if method != "rainnet":
        return get_method(method)
    if model is None:
        from nowcast_core.production import resolve

        svc = _service()
        with svc.sessions() as session:
            choice = resolve(session, "rainnet", svc.settings.model)
        if choice.method != "rainnet":
            err.print(f"[red]no RainNet model: {choice.note}[/red]")
            raise typer.Exit(1)
        model = choice.model_path
    return get_method("rainnet", model_path=model)


@app.command()
def predict(folder: Path, out: Annotated[Path, typer.Option("--out", help="FILE.npz")],
            method: Method = Method.rainnet, model: Optional[Path] = None,
            plot: Annotated[Optional[Path], typer.Option(help="draw one issue time's inputs and leads to FILE.png")] = None,
            plot_issue_time: Optional[str] = None) -> None:
    """Forecast from every scan in FOLDER that has its three predecessors."""
    import numpy as np

    from nowcast_core.evaluation import predict_folder

    forecaster = _forecaster(method.value, model)
    issue_times, rain = predict_folder(folder, forecaster)
    if not issue_times:
        err.print(f"[red]no scan in {folder} has its three predecessors[/red]")
        raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    iso = [t.isoformat().replace("+00:00", "Z") for t in issue_times]
    np.savez_compressed(out, issue_times=np.array(iso, dtype=str), rain_rate_mm_h=rain.astype(np.float32))
    err.print(f"{len(iso)} forecasts ({forecaster.name}, {forecaster.version}) written to {out}")
    if plot is not None:
        from nowcast_core.config import load_settings
        from nowcast_core.dams import load_dams
        from nowcast_core.evaluation import folder_sequences
        from nowcast_core.plots import plot_forecast

        wanted = parse_time(plot_issue_time) if plot_issue_time else issue_times[-1]
        if wanted not in issue_times:
            err.print(f"[red]{plot_issue_time} is not an issue time of {folder}[/red]")
            raise typer.Exit(1)
        k = issue_times.index(wanted)
        _, inputs, _ = folder_sequences(folder)
        plot_forecast(inputs[k], rain[k], wanted, load_dams(load_settings().dams_file), plot, forecaster.name)
        err.print(f"plot written to {plot}")


@app.command()
def evaluate(folders: list[Path], fmt: FormatOpt = Format.table, model: Optional[Path] = None,
             methods: Annotated[str, typer.Option(help="comma-separated methods")] = "rainnet,pysteps,persistence") -> None:
    """Skill per lead of rainnet, pysteps and persistence side by side on folders of scans."""
    from nowcast_core.config import load_settings
    from nowcast_core.dams import load_dams
    from nowcast_core.evaluation import evaluate_folders

    forecasters = [_forecaster(m.strip(), model) for m in methods.split(",") if m.strip()]
    pixels = [d.pixel for d in load_dams(load_settings().dams_file)]
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(folders))
        rows = evaluate_folders(folders, forecasters, pixels, progress=lambda _f: progress.advance(task))
    if fmt == Format.table:
        keep = ("method", "lead_minutes", "n_forecasts", "csi_0.1", "csi_1", "csi_5", "csi_10", "pod_1", "far_1",
                "mae_mm_h", "competition_score")
        rows = [{k: r[k] for k in keep} for r in rows]
    if fmt == Format.json:
        print(json.dumps(rows, indent=2))
    else:
        render(rows, fmt, title="skill per lead (counts pooled over all forecast starts)")


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
    from flows.deployments import REPO_DIR, DeployError, DeployOptions, build_deployments, deploy as do_deploy, describe
    from nowcast_core.config import load_settings

    _setup_logging()
    extra = {}
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--env")
        extra[key] = value
    settings = load_settings()
    options = DeployOptions(work_pool=work_pool, training_pool=training_pool, name=name,
                            verification_interval_s=verification_interval, source=source or REPO_DIR, extra_env=extra)
    try:
        rows = ([describe(d) for d in build_deployments(settings, options)] if dry_run
                else do_deploy(settings, options, migrate=migrate))
    except DeployError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if fmt == Format.json:
        print(json.dumps(rows, indent=2))
    else:
        render(rows, fmt, title="deployments" + (" (dry run: nothing registered)" if dry_run else ""))
    if not dry_run:
        err.print(f"start workers: prefect worker start --pool {work_pool}   "
                  f"(retraining, on a GPU machine: prefect worker start --pool {training_pool})")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # python -m nowcast_core.cli: how the daemon starts a retraining process
    app()
