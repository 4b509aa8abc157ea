"""Prefect in embedded mode: a temporary local server under ``$NOWCAST_HOME/prefect``.

Call :func:`configure` before Prefect is imported anywhere in the process.
"""

from __future__ import annotations

import os
import signal
import sys
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
