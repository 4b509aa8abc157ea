"""Prefect in embedded mode: a temporary local server under ``$NOWCAST_HOME/prefect``.

Call :func:`configure` before Prefect is imported anywhere in the process.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: Prefect's own history (flow runs, task runs, events) kept by the embedded daemon: two days.
PREFECT_HISTORY_S = 2 * 24 * 3600


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
    # A daemon that runs for years: keep Prefect's own history bounded. A cycle (a sweep every minute
    # when idle) adds about 110 KB to its database, mostly events; the temporary server vacuums events
    # itself, but not flow runs (its flow-run vacuum runs only in a full server): the daemon deletes
    # those (prune_prefect_history).
    os.environ.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events,flow_runs")
    os.environ.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD", str(PREFECT_HISTORY_S))
    os.environ.setdefault("PREFECT_SERVER_EVENTS_RETENTION_PERIOD", f"PT{PREFECT_HISTORY_S}S")  # ISO 8601 here


def prefect_history_kept() -> timedelta:
    """How long Prefect's flow runs and events are kept (``PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD``,
    seconds; :data:`PREFECT_HISTORY_S` unless set)."""
    return timedelta(seconds=float(os.environ.get("PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD",
                                                  PREFECT_HISTORY_S)))


def prune_prefect_history(keep: timedelta | None = None, *, batch: int = 200, max_batches: int = 20) -> int:
    """Delete the flow runs (with their task runs and states) that ended more than ``keep`` ago (default
    :func:`prefect_history_kept`) from Prefect's temporary server: in a full server its own vacuum does
    it. At most ``batch`` x ``max_batches`` a call, oldest first; returns how many were deleted."""
    if os.environ.get("PREFECT_API_URL"):
        return 0
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterEndTime
    from prefect.client.schemas.sorting import FlowRunSort

    before = datetime.now(UTC) - (prefect_history_kept() if keep is None else keep)
    ended_before = FlowRunFilter(end_time=FlowRunFilterEndTime(before_=before))
    deleted = 0
    with get_client(sync_client=True) as client:
        for _ in range(max_batches):
            runs = client.read_flow_runs(flow_run_filter=ended_before, sort=FlowRunSort.START_TIME_ASC, limit=batch)
            for run in runs:
                client.delete_flow_run(run.id)
            deleted += len(runs)
            if len(runs) < batch:
                break
    return deleted


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, shielded from signals meant for the daemon.

    Prefect starts it, on first use, as a plain child in the daemon's process group. So Ctrl-C in a
    terminal, or a SIGTERM to the whole group, stopped it together with the daemon. The running
    cycle then lost its server mid-flow (a traceback), and Prefect's exit handlers retried its
    pending events for minutes (measured: 87 s, a WARNING and an ERROR every few seconds).

    Here it starts in a session of its own, so only the daemon's own exit stops it (Prefect's exit
    handler, after its events are delivered). On Linux it is also told to end when the daemon's main
    thread does, even on SIGKILL, so it is never left behind. Call it from the main thread, before
    other threads start. It leaves the start to Prefect where no temporary server is used
    (``PREFECT_API_URL`` set) or this Prefect is not the one it knows.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    try:
        import prefect.server.api.server as server_module
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the instance Prefect's clients use
        real = server_module.subprocess
    except (ImportError, AttributeError):
        return
    if server.running:
        return

    class _Shielded:
        """The ``subprocess`` module, with a Popen that starts the server in its own session."""

        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def Popen(*args, **kwargs):  # noqa: N802 - the name Prefect calls
            return real.Popen(*args, start_new_session=True, preexec_fn=_end_with_parent, **kwargs)

    server_module.subprocess = _Shielded()
    try:
        server.start()
    finally:
        server_module.subprocess = real


def temporary_server_gone() -> bool:
    """True when this process started Prefect's temporary server and it has already exited (stopped
    from outside: a SIGTERM to every process of a systemd unit with ``KillMode=control-group``)."""
    try:
        from prefect.server.api.server import SubprocessASGIServer

        servers = list(SubprocessASGIServer._instances.values())
        return any(s.server_process is not None and s.server_process.poll() is not None for s in servers)
    except Exception:  # another Prefect: keep its own exit
        return False


def _end_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent (thread) ends (Linux ``PR_SET_PDEATHSIG``)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
