"""Which forecaster produces the production forecast, loaded once and reloaded on change.

Resolution order: an explicit ``method`` setting; an explicit ``model`` file; the registry's
champion; the model bundled with the project (registered as the first champion); else
pysteps. A model that is missing, corrupt or fails to load gives pysteps, and the reason
is recorded in every run's ``note`` and shown by ``nowcast status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from nowcast_core.forecasters import Forecaster, get_method
from nowcast_core.io.files import file_sha256
from nowcast_core.models import registry
from nowcast_core.rainnet import bundled_model_path

log = logging.getLogger(__name__)

FALLBACK_METHOD = "pysteps"


@dataclass(frozen=True)
class Choice:
    """The production method as resolved now."""

    method: str
    model_path: Path | None = None
    checksum: str | None = None
    note: str = ""


def resolve(session: Session, home: Path, method: str | None = None, model: Path | None = None) -> Choice:
    """The production method, model file and any fallback reason (no model is loaded here).

    ``home``: the installation's folder, under which the registry records its own model files."""
    if method and method != "rainnet":
        return Choice(method)
    if model is not None:
        if not Path(model).exists():
            return Choice(FALLBACK_METHOD, note=f"configured model {model} is missing: {FALLBACK_METHOD} fallback")
        return Choice("rainnet", Path(model), file_sha256(model))
    registry.ensure_bundled_registered(session, bundled_model_path(), home)
    record = registry.champion(session)
    if record is None:
        return Choice(FALLBACK_METHOD, note=f"no trained model registered or bundled: {FALLBACK_METHOD} fallback")
    problem = registry.verify_model_file(record, home)
    if problem:
        return Choice(FALLBACK_METHOD, note=f"{problem}: {FALLBACK_METHOD} fallback")
    return Choice("rainnet", record.model_file(home), record.checksum)


class ProductionForecaster:
    """Keeps the production forecaster loaded between cycles; reloads when the choice changes."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._forecaster: Forecaster | None = None
        self._note = ""

    @property
    def method(self) -> str | None:
        """The method of the forecaster loaded last (None before the first :meth:`get`)."""
        return self._forecaster.name if self._forecaster is not None else None

    def get(self, choice: Choice) -> tuple[Forecaster, str]:
        """The forecaster for ``choice`` and the note to record with its runs."""
        key = (choice.method, choice.model_path, choice.checksum, choice.note)
        if key != self._key:
            self._forecaster, self._note = self._load(choice)
            self._key = key
        return self._forecaster, self._note

    @staticmethod
    def _load(choice: Choice) -> tuple[Forecaster, str]:
        if choice.method != "rainnet":
            return get_method(choice.method), choice.note
        try:
            forecaster = get_method("rainnet", model_path=choice.model_path)
        except Exception as exc:  # a model that cannot be loaded must not stop forecasting
            note = f"model {choice.model_path} failed to load ({type(exc).__name__}: {exc}): {FALLBACK_METHOD} fallback"
            log.error(note)
            return get_method(FALLBACK_METHOD), note
        log.info("loaded production model %s (%s)", choice.model_path, forecaster.version)
        return forecaster, choice.note
