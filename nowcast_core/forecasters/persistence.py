"""Persistence: the last scan, unchanged, at every lead."""

from __future__ import annotations

import numpy as np

from nowcast_core import extrapolation
from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs


class Persistence:
    name = "persistence"
    version = "1"

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        return extrapolation.persistence(check_inputs(rain_rate_mm_h), N_LEADS)


@register("persistence")
def make_persistence() -> Persistence:
    return Persistence()
