"""The embedded daemon: APScheduler in this process triggers the forecast cycle flow.

One daemon per home (a lock file says who holds it); SIGTERM and SIGINT let the running
cycle finish and stop the scheduler cleanly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from nowcast_core.config import Settings
from nowcast_core.cycle.locks import file_lock

log = logging.getLogger("nowcast.daemon")


def _guarded(cycle, name: str = "forecast cycle"):
    """The scheduled job: a failing cycle (database down, disk full) is logged; the next tick retries."""

    def tick():
        try:
            cycle()
        except Exception:
            log.exception("%s failed; the next one retries", name)

    return tick


def run_daemon(settings: Settings, *, once: bool = False,
               jobs: Sequence[tuple[str, Callable[[], None], float]] = ()) -> int:
    """Run cycles every ``settings.poll_interval_s`` until signalled (or one cycle with ``once``).

    ``jobs``: (name, function, interval in seconds) run beside the cycle in the scheduler's own
    threads (e.g. webhook delivery), so they never delay a forecast; with ``once``, each runs once
    after the cycle.
    """
    from flows.embedded import configure

    configure(settings.home, settings.prefect_startup_timeout_s)
    from flows.forecast_cycle import forecast_cycle, service

    if once:
        forecast_cycle()
        for name, job, _interval in jobs:
            _guarded(job, name)()
        return 0

    settings.ensure_dirs()
    stop = threading.Event()

    def _stop(signum, _frame):
        log.info("received %s: stopping after the running cycle", signal.Signals(signum).name)
        stop.set()

    # Before the slow start (migration, model loading): a stop asked for then is honoured at once after it.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with file_lock(settings.home / "daemon.lock"):
        svc = service()  # migrate and load the model once, before the first tick
        svc.production_forecaster()
        if stop.is_set():
            svc.close()
            log.info("daemon stopped before its first cycle")
            return 0

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

        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1,
                                                                    "misfire_grace_time": None})
        scheduler.add_job(_guarded(forecast_cycle), "interval", seconds=settings.poll_interval_s, id="forecast-cycle",
                          next_run_time=datetime.now(UTC))
        scheduler.add_job(_retrain, CronTrigger.from_crontab(settings.retrain_cron, timezone=UTC), id="retrain")
        for name, job, interval in jobs:
            scheduler.add_job(_guarded(job, name), "interval", seconds=interval, id=name)
        scheduler.start()
        log.info("daemon started: home %s, inbox %s, every %.0f s", settings.home, settings.inbox,
                 settings.poll_interval_s)
        try:
            while not stop.wait(1.0):
                pass
        finally:
            for child in list(training):  # a retraining is restartable: stop it rather than wait for it
                log.info("stopping the retraining child process %d", child.pid)
                child.terminate()
            scheduler.shutdown(wait=True)
            svc.close()
            log.info("daemon stopped")
    return 0


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

