"""Console logging of the command line and the daemon: text for a terminal, JSON lines for journald.

Quiet by default: INFO from ``nowcast*`` loggers, WARNING and up from the libraries (Prefect,
APScheduler, Alembic, TensorFlow). ``--verbose`` shows DEBUG from everything.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from nowcast_core.times import iso_utc

#: Library loggers that speak only when something is wrong (unless --verbose).
QUIET_LOGGERS = ("httpx", "httpcore", "alembic", "tensorflow", "absl", "prefect", "apscheduler", "urllib3",
                 "asyncio", "docket", "uvicorn", "matplotlib", "h5py")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": iso_utc(datetime.fromtimestamp(record.created, UTC), "milliseconds"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a record is written (never a stale, closed stream)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool = False, log_format: str | None = None) -> None:
    """Configure the root logger once for this process: ``log_format`` ``text`` or ``json`` (the setting
    ``log_format``, from the environment or the TOML file; None: ``NOWCAST_LOG_FORMAT``, for a command
    that logs before it reads its settings)."""
    log_format = (log_format or os.environ.get("NOWCAST_LOG_FORMAT", "text")).lower()
    handler = StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # "skipped: maximum number of running instances reached" is normal catch-up, not a warning.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.DEBUG if verbose else logging.ERROR)
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    # Prefect configures its own console handlers when it starts: keep them as quiet as ours.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_ROOT_LEVEL", "DEBUG" if verbose else "WARNING")
    # A failed flow or task run is reported by the daemon in one line (flows/daemon.py); Prefect's
    # own run loggers would add a traceback per task try.
    for run_logger in ("FLOW_RUNS", "TASK_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_LOGGERS_PREFECT_{run_logger}_LEVEL", "DEBUG" if verbose else "CRITICAL")
