"""Prefect deployments of the flows, for a real Prefect server and process workers (``nowcast deploy``).

The embedded daemon (``nowcast run``, :mod:`flows.daemon`) needs none of this. With a Prefect
server (``PREFECT_API_URL``) the same flows run as deployments picked up by ``prefect worker``
processes:

===================  =====================================  ==========================  =================
deployment           schedule                               work pool (default)         concurrency
===================  =====================================  ==========================  =================
forecast-cycle/NAME  every ``poll_interval_s``              ``nowcast``                 1, CANCEL_NEW
verification/NAME    every ``verification_interval_s``      ``nowcast``                 1, CANCEL_NEW
retrain/NAME         ``retrain_cron`` (UTC)                 ``nowcast-training`` (GPU)  1, CANCEL_NEW
===================  =====================================  ==========================  =================

CANCEL_NEW: a run that comes due while the previous one of the same deployment is still
running is cancelled rather than queued, so a slow cycle never builds a backlog.

The code is found by the workers through :class:`prefect.runner.storage.LocalStorage`
(``flow.from_source(<source dir>, ...)``): a worker changes into ``source`` and loads the
entrypoint from there, so ``source`` must hold this checkout at the same path on every
worker machine (shared filesystem or identical install). No image is built.

The ``NOWCAST_*`` settings of the deploying shell travel with every flow run as the job
variable ``env`` (paths made absolute), so a worker started with no ``NOWCAST_*`` variables
still finds the right home and database.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from nowcast_core.config import Settings

log = logging.getLogger("nowcast.deploy")

REPO_DIR = Path(__file__).resolve().parents[1]

FORECAST_ENTRYPOINT = "flows/forecast_cycle.py:forecast_cycle"
VERIFICATION_ENTRYPOINT = "flows/verification.py:verification"
RETRAIN_ENTRYPOINT = "flows/retrain.py:retrain"

DEFAULT_WORK_POOL = "nowcast"
DEFAULT_TRAINING_POOL = "nowcast-training"
DEFAULT_NAME = "nowcast"
DEFAULT_VERIFICATION_INTERVAL_S = 600.0

# Settings that are paths: made absolute before they travel to workers, whose working
# directory is the source checkout, not the deploying shell's.
_PATH_VARS = ("NOWCAST_HOME", "NOWCAST_INBOX", "NOWCAST_ARCHIVE", "NOWCAST_QUARANTINE", "NOWCAST_FORECASTS",
              "NOWCAST_DAMS_FILE", "NOWCAST_MODEL", "NOWCAST_CONFIG")


class DeployError(RuntimeError):
    """Deployment is impossible as configured (no server, bad pool, ...)."""


@dataclass
class DeployOptions:
    work_pool: str = DEFAULT_WORK_POOL
    training_pool: str = DEFAULT_TRAINING_POOL
    name: str = DEFAULT_NAME
    verification_interval_s: float = DEFAULT_VERIFICATION_INTERVAL_S
    source: Path = REPO_DIR
    extra_env: dict[str, str] = field(default_factory=dict)


def worker_env(settings: Settings, environ: Mapping[str, str] | None = None,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every flow run gets: the deploying shell's ``NOWCAST_*`` variables,
    path variables made absolute, and always ``NOWCAST_HOME`` and ``NOWCAST_DATABASE_URL``."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k.startswith("NOWCAST_") and v != ""}
    for key in _PATH_VARS:
        if key in env:
            env[key] = str(Path(env[key]).expanduser().resolve())
    env["NOWCAST_HOME"] = str(Path(settings.home).expanduser().resolve())
    env["NOWCAST_DATABASE_URL"] = str(settings.database_url)
    env.update(extra or {})
    return env


def _one_at_a_time():
    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )

    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def build_deployments(settings: Settings, options: DeployOptions | None = None,
                      environ: Mapping[str, str] | None = None) -> list[Any]:
    """The three :class:`prefect.deployments.runner.RunnerDeployment` objects (no server needed).

    Loading an entrypoint imports its flow module (not ``nowcast_core.models.retrain``, which the
    retrain flow imports only when it runs).
    """
    from prefect import Flow
    from prefect.schedules import Cron, Interval

    options = options or DeployOptions()
    source = Path(options.source).expanduser().resolve()
    for entrypoint in (FORECAST_ENTRYPOINT, VERIFICATION_ENTRYPOINT, RETRAIN_ENTRYPOINT):
        if not (source / entrypoint.split(":")[0]).is_file():
            raise DeployError(f"{source} is not a nowcast checkout: {entrypoint.split(':')[0]} missing")
    env = worker_env(settings, environ, options.extra_env)
    tags = ["nowcast"]

    def job_variables() -> dict[str, Any]:  # one copy each: apply() may add to it
        return {"env": dict(env)}

    def load(entrypoint: str):
        return Flow.from_source(source=str(source), entrypoint=entrypoint)

    forecast = load(FORECAST_ENTRYPOINT).to_deployment(
        options.name,
        schedule=Interval(timedelta(seconds=settings.poll_interval_s), timezone="UTC", slug="poll-interval"),
        concurrency_limit=_one_at_a_time(),
        work_pool_name=options.work_pool,
        job_variables=job_variables(),
        tags=tags,
        description="Poll the inbox, ingest, forecast every complete scan, store (one at a time).",
    )
    verification = load(VERIFICATION_ENTRYPOINT).to_deployment(
        options.name,
        schedule=Interval(timedelta(seconds=options.verification_interval_s), timezone="UTC", slug="interval"),
        concurrency_limit=_one_at_a_time(),
        work_pool_name=options.work_pool,
        job_variables=job_variables(),
        tags=tags,
        description="Score stored forecasts whose observed scans have arrived.",
    )
    retrain = load(RETRAIN_ENTRYPOINT).to_deployment(
        options.name,
        schedule=Cron(settings.retrain_cron, timezone="UTC", slug="retrain-cron"),
        concurrency_limit=_one_at_a_time(),
        work_pool_name=options.training_pool,
        job_variables=job_variables(),
        tags=[*tags, "training"],
        description="Fine-tune a challenger and promote it only if measurably better (GPU pool).",
    )
    return [forecast, verification, retrain]


def api_url() -> str:
    """The Prefect server to deploy to; refuses to fall back to a throw-away ephemeral server."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise DeployError("PREFECT_API_URL is not set: point it at the Prefect server, "
                          "e.g. export PREFECT_API_URL=http://prefect-host:4200/api (see docs/DEPLOY.md)")
    return str(url)


def ensure_process_pool(client, name: str) -> bool:
    """Create process work pool ``name`` when missing; True when created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        try:
            client.create_work_pool(WorkPoolCreate(
                name=name, type=ProcessWorker.type,
                base_job_template=ProcessWorker.get_default_base_job_template(),
                description="nowcast flows (created by nowcast deploy)"))
        except ObjectAlreadyExists:  # created meanwhile by someone else
            return False
        return True
    if pool.type != ProcessWorker.type:
        log.warning("work pool %s is of type %r, not %r: its workers must still reach the source "
                    "checkout and the NOWCAST_* storage", name, pool.type, ProcessWorker.type)
    return False


def describe(deployment) -> dict[str, Any]:
    """One row about a built deployment (for the CLI and tests)."""
    schedules = []
    for s in deployment.schedules or []:
        sch = s.schedule
        if getattr(sch, "interval", None) is not None:
            schedules.append(f"every {sch.interval.total_seconds():g} s")
        elif getattr(sch, "cron", None):
            schedules.append(f"cron '{sch.cron}' {sch.timezone or 'UTC'}")
        else:
            schedules.append(str(sch))
    options = deployment.concurrency_options
    return {
        "deployment": f"{deployment.flow_name}/{deployment.name}",
        "work_pool": deployment.work_pool_name,
        "schedule": ", ".join(schedules),
        "concurrency": f"{deployment.concurrency_limit}"
                       + (f" {options.collision_strategy.value}" if options is not None else ""),
        "entrypoint": deployment.entrypoint,
    }


def deploy(settings: Settings, options: DeployOptions | None = None,
           environ: Mapping[str, str] | None = None, *, migrate: bool = True) -> list[dict[str, Any]]:
    """Create the work pools if missing and register (create or update) the three deployments.

    With ``migrate`` the application database is migrated first, once, so that the first flow
    runs (forecast cycle and verification may start together) never race to create the schema.
    """
    from prefect.client.orchestration import get_client

    options = options or DeployOptions()
    url = api_url()
    if str(settings.database_url).startswith("sqlite"):
        log.warning("NOWCAST_DATABASE_URL is SQLite (%s): only workers on this machine can use it; "
                    "use PostgreSQL for workers on several machines", settings.database_url)
    deployments = build_deployments(settings, options, environ)
    if migrate:
        from nowcast_core.db import upgrade

        if str(settings.database_url).startswith("sqlite"):
            Path(settings.home).mkdir(parents=True, exist_ok=True)
        upgrade(settings.database_url)
        log.info("application database migrated to the newest schema")
    with get_client(sync_client=True) as client:
        for pool in dict.fromkeys((options.work_pool, options.training_pool)):
            if ensure_process_pool(client, pool):
                log.info("work pool %s created (type process)", pool)
    rows = []
    for deployment in deployments:
        deployment_id = deployment.apply()
        rows.append({**describe(deployment), "id": str(deployment_id)})
        log.info("deployment %s registered on %s", rows[-1]["deployment"], url)
    return rows
