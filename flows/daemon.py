"""The embedded daemon: the forecast cycle flow runs in this process, as soon as a scan lands.

- An inbox watcher (``nowcast_core.inbox.watch``; off with ``NOWCAST_WATCH=0``) asks for a cycle
  the moment a scan is complete; a sweep every ``poll_interval_s`` (without a cycle) is the
  safety net. One thread runs the cycles (``nowcast_core.cycle.runner``): requests coalesce,
  cycles never overlap, a request during a cycle gives one follow-up cycle.
- Everything slow happens once, before the first scan is handled: Prefect's temporary server (in a
  session of its own, so a Ctrl-C or a SIGTERM for the daemon's group does not stop it mid-cycle;
  ``flows.embedded.start_temporary_server``), migrations, loading (and tracing) the forecasters.
- APScheduler runs the retraining (cron) in a child process.

One daemon per home (a lock file says who holds it); SIGTERM and SIGINT let the running
cycle finish and stop everything cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from nowcast_core.config import Settings
from nowcast_core.cycle.locks import file_lock
from nowcast_core.cycle.runner import CycleRunner
from nowcast_core.inbox.watch import announcer

log = logging.getLogger("nowcast.daemon")
#: How often the daemon deletes Prefect's flow runs past their retention (``flows.embedded``).
PREFECT_HISTORY_EVERY_S = 3600


def _warn_unregistered(svc) -> None:
    """Say at start-up when the archive holds scans newer than the database's newest (a database restored
    from an older backup, or lost): they are not forecast or verified until `nowcast recover` re-registers
    them. Only the day folders from the newest scan on are read; `nowcast recover` reads them all."""
    from nowcast_core.inbox.recovery import archived_not_registered

    try:
        with svc.sessions() as session:
            missing = archived_not_registered(session, svc.settings.archive, after_newest=True)
    except Exception:  # noqa: BLE001 - a check, never a reason not to start
        log.debug("the archive could not be compared with the database", exc_info=True)
        return
    if missing:
        log.warning("the archive holds %d scans the database does not have (%s .. %s): run `nowcast recover` "
                    "to register them again", len(missing), missing[0].name, missing[-1].name)


def _log_if(message: str | None) -> None:
    if message:
        log.warning(message)


#: A job failing the same way again is logged once per this many seconds (with the count), not at every tick.
REPEAT_LOG_S = 300.0


def _guarded(cycle, name: str = "forecast cycle", clock: Callable[[], float] = time.monotonic):
    """The scheduled job: a failing cycle is logged and the next tick retries. A database that cannot
    be reached or a full disk is one line (the traceback at debug level); anything else, a traceback.
    The same failure again is logged once per :data:`REPEAT_LOG_S` with how often it happened (an outage
    of a day is not 17,000 lines), and the first success after failures says that it works again."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from nowcast_core.cycle.service import DatabaseFileGone, failure_reason

    state = {"reason": None, "logged_at": 0.0, "since_logged": 0, "failures": 0}

    def failed(reason: str) -> bool:
        """Count a failure; whether to log it now."""
        state["failures"] += 1
        now = clock()
        if reason == state["reason"] and now - state["logged_at"] < REPEAT_LOG_S:
            state["since_logged"] += 1
            return False
        state.update(reason=reason, logged_at=now)
        return True

    def repeated() -> str:
        count, state["since_logged"] = state["since_logged"], 0
        return f" (and {count} more times since it was last logged)" if count else ""

    def tick(*args, **kwargs):
        try:
            cycle(*args, **kwargs)
        except (OperationalError, InterfaceError, OSError, DatabaseFileGone) as exc:
            reason = failure_reason(exc)
            if failed(reason):
                log.error("%s failed: %s; the next one retries%s", name, reason, repeated())
            log.debug("%s failure", name, exc_info=True)
        except Exception as exc:
            if failed(f"{type(exc).__name__}: {exc}"):
                log.exception("%s failed; the next one retries%s", name, repeated())
        else:
            if state["failures"]:
                n = state["failures"]
                log.info("%s works again after %d failed attempt%s", name, n, "" if n == 1 else "s")
                state.update(reason=None, logged_at=0.0, since_logged=0, failures=0)

    return tick


def run_daemon(settings: Settings, *, once: bool = False,
               jobs: Sequence[tuple[str, Callable[[], None], float]] = ()) -> int:
    """Run a cycle as soon as a scan lands, and a sweep after ``settings.poll_interval_s`` without a
    cycle, until signalled (or one cycle with ``once``).

    ``jobs``: (name, function, interval in seconds) run beside the cycle in the scheduler's own
    threads (e.g. webhook delivery), so they never delay a forecast; with ``once``, each runs once
    after the cycle.
    """
    from flows.embedded import configure, start_temporary_server, temporary_server_gone

    configure(settings.home, settings.prefect_startup_timeout_s)
    start_temporary_server()  # first, from this thread: a signal for the daemon is not one for it
    from flows.forecast_cycle import forecast_cycle, service

    jobs = [*jobs, ("Prefect history pruning", _prune_prefect_history, PREFECT_HISTORY_EVERY_S)]
    if once:
        _warn_unregistered(service())
        forecast_cycle()
        for name, job, _interval in jobs:
            _guarded(job, name)()
        return 0

    settings.ensure_dirs()
    stop = threading.Event()
    _stop = stop_on_signal(stop)

    # Before the slow start (migration, model loading): a stop asked for then is honoured at once after it.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with file_lock(settings.home / "daemon.lock") as unclean:
        if unclean:
            log.warning("the daemon before this one (%s) ended without stopping: killed, crashed or the power "
                        "failed. Scans it had not moved are still in the inbox and are swept now, and any forecast "
                        "it had not stored is made again", unclean)
        svc = service()  # migrate once, before anything else
        _warn_unregistered(svc)
        try:
            svc.warm_up()  # load (and trace) the forecasters once, before the first scan
        except Exception:  # the cycle falls back or reports it; the daemon must still start
            log.exception("warming up the forecasters failed; they load at the first cycle")
        if stop.is_set():
            svc.close()
            log.info("daemon stopped before its first cycle")
            return 0
        runner = CycleRunner(_guarded(_in_process(forecast_cycle, svc)), settings.poll_interval_s)
        watcher = _watch(settings, announcer(svc.announced, runner.request, settings.settle_seconds))

        training: list[subprocess.Popen] = []

        def _retrain():
            # Its own process, at low priority: a cycle that falls due during training runs on time.
            log.info("retraining started in a child process")
            child = subprocess.Popen([sys.executable, "-m", "flows.retrain_child"],
                                     preexec_fn=lambda: os.nice(10))
            training.append(child)
            rc = child.wait()
            training.remove(child)
            log.info("retraining finished (exit code %d)", rc)
            runner.request("model")  # a promoted model is loaded now, not when the next scan lands

        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                                                    "misfire_grace_time": None})
        scheduler.add_job(_retrain, CronTrigger.from_crontab(settings.retrain_cron, timezone=UTC), id="retrain")
        for name, job, interval in jobs:
            scheduler.add_job(_guarded(job, name), "interval", seconds=interval, id=name)
        if watcher is not None:  # an inbox deleted and made again is watched again, not left to the sweeps
            scheduler.add_job(_guarded(lambda: _log_if(watcher.check()), "inbox watch check"), "interval",
                              seconds=settings.poll_interval_s, id="inbox watch check")
        scheduler.start()
        runner.start()  # the first cycle, a sweep, runs now
        log.info("daemon started: home %s, inbox %s (%s), sweep every %.0f s", settings.home, settings.inbox,
                 "watched" if watcher else "not watched", settings.poll_interval_s)
        try:
            while not stop.wait(1.0):
                pass
        finally:
            if watcher is not None:
                watcher.stop()
            for child in list(training):  # a retraining is restartable: stop it rather than wait for it
                log.info("stopping the retraining child process %d", child.pid)
                child.terminate()
            runner.stop()
            scheduler.shutdown(wait=True)
            svc.close()
            log.info("daemon stopped")
    if temporary_server_gone():
        _exit_without_prefect_drain()
    return 0


def _prune_prefect_history() -> None:
    from flows.embedded import prune_prefect_history

    deleted = prune_prefect_history()
    if deleted:
        log.debug("Prefect history: %d flow runs older than the retention deleted", deleted)


def stop_on_signal(stop: threading.Event):
    """A signal handler that sets ``stop`` and says so; a second signal is told the daemon is already
    stopping (Ctrl-C pressed twice), not logged as if it were the first."""

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if stop.is_set():
            log.info("received %s again: already stopping, after the running cycle (SIGKILL stops at once; "
                     "committed runs are kept and the rest is redone at the next start)", name)
        else:
            log.info("received %s: stopping after the running cycle", name)
        stop.set()

    return handler


def _exit_without_prefect_drain() -> None:
    """End the process now. Prefect's exit handlers would try to deliver its pending run events to the
    server that is gone, retrying every few seconds per event for minutes (measured: 87 s after a
    SIGTERM to the process group), each attempt a WARNING and an ERROR on the console. The daemon's
    own work is done: the database is closed and the running cycle has finished."""
    log.info("Prefect's temporary server stopped with the daemon: its pending run events are dropped")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _in_process(flow, svc):
    """The flow called in this process, without Prefect's flow-run heartbeats: they exist to detect
    a crashed worker process, and stopping their thread adds up to 1 s to every cycle (measured:
    1.1 s per empty cycle with them, 0.2-0.4 s without). After a retraining (``trigger="model"``)
    the forecasters are loaded and warmed up first."""
    from prefect.settings import temporary_settings

    def cycle(trigger: str) -> dict:
        if trigger == "model":
            svc.warm_up()
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            return flow(trigger=trigger)

    return cycle


def _watch(settings: Settings, on_scan):
    """The inbox watcher, or None (``NOWCAST_WATCH=0``, or the folder cannot be watched: sweeps only)."""
    if not settings.watch:
        return None
    from nowcast_core.inbox.watch import InboxWatch

    try:
        return InboxWatch(settings.inbox, on_scan)
    except OSError as exc:
        log.warning("cannot watch the inbox %s (%s): sweeps every %.0f s only", settings.inbox, exc,
                    settings.poll_interval_s)
        return None


def stop_daemon(process: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """Stop a daemon started with ``start_new_session=True`` as systemd would: SIGTERM, then,
    after ``timeout_s``, SIGKILL to its whole process group (and raise TimeoutExpired)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise

