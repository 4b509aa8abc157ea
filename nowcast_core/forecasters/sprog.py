"""S-PROG (pysteps ``sprog``): the dBR field decomposed into a cascade of spatial scales, each
extrapolated along the Lucas-Kanade motion and damped by its own AR(2) process, so small scales
fade first (see :mod:`nowcast_core.forecasters.cascade`). Deterministic; no-source areas are dry."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nowcast_core.forecasters import cascade, register
from nowcast_core.forecasters.base import N_LEADS, check_inputs


class SProg:
    name = "sprog"

    def __init__(self, n_cascade_levels: int = 6):
        self.n_cascade_levels = n_cascade_levels
        self.version = f"pysteps-{importlib.metadata.version('pysteps')}-sprog-{n_cascade_levels}levels"

    def _one(self, sequence_mm_h: np.ndarray) -> np.ndarray:
        from pysteps import nowcasts

        def nowcast(dbr, velocity):
            out = nowcasts.get_method("sprog")(dbr[-3:], velocity, N_LEADS, precip_thr=cascade.RAIN_THRESHOLD_DBR,
                                               n_cascade_levels=self.n_cascade_levels)
            return cascade.to_mm_h(out)

        return cascade.run(sequence_mm_h, N_LEADS, nowcast)

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        return np.stack([self._one(seq) for seq in x]) if len(x) else np.zeros((0, N_LEADS) + x.shape[2:], np.float32)


@register("sprog")
def make_sprog(n_cascade_levels: int = 6) -> SProg:
    return SProg(n_cascade_levels)
