"""The forecaster interface."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from nowcast_core.contract import LEAD_MINUTES, N_INPUTS, N_LEADS

__all__ = ["Forecaster", "check_inputs", "LEAD_MINUTES", "N_INPUTS", "N_LEADS"]


class Forecaster(Protocol):
    """What every forecast method offers."""

    name: str
    version: str

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        """Forecast six 10-minute leads.

        Parameters
        ----------
        rain_rate_mm_h : float32 array (n, 4, H, W), scans t-30 .. t, NaN where no data.

        Returns
        -------
        float32 array (n, 6, H, W): rain rate in mm/h at t+10 .. t+60, finite and >= 0.
        """
        ...


def check_inputs(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """Validate and return inputs as float32 (n, 4, H, W)."""
    x = np.asarray(rain_rate_mm_h, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != N_INPUTS:
        raise ValueError(f"forecast inputs must be (n, {N_INPUTS}, H, W), got {x.shape}")
    return x
