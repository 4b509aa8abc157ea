"""Prefect in embedded mode: a temporary local server under ``$NOWCAST_HOME/prefect``.

Call :func:`configure` before Prefect is imported anywhere in the process.
"""

from __future__ import annotations

import os
from pathlib import Path


def configure(home: Path, startup_timeout_s: int = 90) -> None:
    """Point Prefect at a private home with an ephemeral server, analytics off.

    A ``PREFECT_API_URL`` already set (a real Prefect server) is respected.
    """
    prefect_home = Path(home).resolve() / "prefect"
    prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(prefect_home))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(max(60, startup_timeout_s)))
    if not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "true"
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "2")
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "false")
    # A daemon that runs for years: keep Prefect's own history bounded (a week of flow runs).
    os.environ.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events,flow_runs")
    os.environ.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD", str(7 * 24 * 3600))
