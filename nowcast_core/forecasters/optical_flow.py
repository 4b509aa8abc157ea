"""Optical flow: pysteps Lucas-Kanade motion, semi-Lagrangian extrapolation, no-source areas dry
(see ``nowcast_core.extrapolation``)."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nowcast_core import extrapolation
from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs


class OpticalFlow:
    name = "pysteps"
    version = "pysteps-" + importlib.metadata.version("pysteps") + "-LK"

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        return np.stack([extrapolation.extrapolate(seq, N_LEADS) for seq in x])


@register("pysteps")
def make_optical_flow() -> OpticalFlow:
    return OpticalFlow()
