"""Persistence: the last scan, unchanged, at every lead."""

from __future__ import annotations

import numpy as np

from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs


class Persistence:
    name = "persistence"
    version = "1"

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        last = np.nan_to_num(check_inputs(rain_rate_mm_h)[:, -1], nan=0.0)
        return np.repeat(last[:, None], N_LEADS, axis=1).astype(np.float32)


@register("persistence")
def make_persistence() -> Persistence:
    return Persistence()
