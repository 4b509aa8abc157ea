"""Extrapolation filled: pysteps Lucas-Kanade motion and semi-Lagrangian extrapolation, as the
``pysteps`` forecaster, but areas with no upstream source take the newest scan (persistence)
instead of 0 mm/h; NaN input is dry. RainNet's conditioning input without its smoothing."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nowcast_core import extrapolation
from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs


class ExtrapolationFilled:
    name = "extrapolation-filled"
    version = "pysteps-" + importlib.metadata.version("pysteps") + "-LK-filled"

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        return extrapolation.extrapolate_batch(check_inputs(rain_rate_mm_h), N_LEADS, 0.0, fill_inflow=True)


@register("extrapolation-filled")
def make_extrapolation_filled() -> ExtrapolationFilled:
    return ExtrapolationFilled()
