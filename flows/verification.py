"""The verification flow on its own (the forecast cycle also verifies after each cycle)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.forecast_cycle import service
from nowcast_core.cycle.locks import LockHeld, file_lock


@flow(name="verification", persist_result=False)
def verification() -> int:
    """Score every stored forecast whose observed scan has arrived."""
    svc = service()
    try:
        with file_lock(svc.settings.home / "verify.lock"):
            n = svc.verify()
    except LockHeld as exc:
        get_run_logger().warning("verification already running: %s", exc)
        return 0
    get_run_logger().info("%d (run, lead) pairs verified", n)
    return n
