"""Running a forecaster over many issue times."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from nowcast_core.contract import N_LEADS
from nowcast_core.forecasters.base import Forecaster
from nowcast_core.io.sequences import folder_sequences


def forecast_batched(forecaster: Forecaster, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    """``forecaster`` over (n, 4, H, W) inputs, ``batch`` issue times at a time: (n, 6, H, W)."""
    if not len(inputs):
        return np.zeros((0, N_LEADS) + inputs.shape[2:], np.float32)
    return np.concatenate([forecaster.forecast(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def predict_folder(folder: str | Path, forecaster: Forecaster, batch: int = 32) -> tuple[list[datetime], np.ndarray]:
    """Forecasts from every scan of ``folder`` that has its three predecessors: (issue times, (n, 6, H, W))."""
    issue_times, inputs, _ = folder_sequences(folder)
    return issue_times, forecast_batched(forecaster, inputs, batch)
