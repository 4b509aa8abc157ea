"""The retraining flow: fine-tune a challenger from the champion, promote only if measurably better.

Runs on its own schedule (``settings.retrain_cron``, default weekly). The domain logic is
:func:`nowcast_core.models.retrain.retrain`; this flow only orchestrates it.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from nowcast_core.config import load_settings
from nowcast_core.cycle.locks import LockHeld, file_lock


@flow(name="retrain", persist_result=False)
def retrain(epochs: int | None = None, extra_folders: list[str] | None = None) -> dict:
    """Train a challenger on the archive (and ``extra_folders``, default the setting) and decide
    on its promotion; returns the registry entry."""
    from nowcast_core.models.retrain import retrain as run_retrain

    logger = get_run_logger()
    settings = load_settings()
    try:
        with file_lock(settings.home / "retrain.lock"):
            entry = run_retrain(settings, epochs=epochs,
                                extra_folders=None if extra_folders is None else [Path(f) for f in extra_folders])
    except LockHeld as exc:
        logger.warning("a retraining is already running: %s", exc)
        return {"skipped": str(exc)}
    logger.info("retrain: model %s decision %s: %s", entry.get("id"), entry.get("decision"), entry.get("reason"))
    return entry

