"""STEPS ensemble mean (pysteps ``steps``): ``n_members`` stochastic S-PROG forecasts with
cascade noise and perturbed motion (see :mod:`nowcast_core.forecasters.cascade`), back in mm/h
and averaged there. The same ``seed`` and inputs give the same forecast."""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nowcast_core.contract import SCAN_INTERVAL
from nowcast_core.forecasters import cascade, register
from nowcast_core.forecasters.base import N_LEADS, check_inputs

KM_PER_PIXEL = 1.0


class StepsMean:
    name = "steps-mean"

    def __init__(self, n_members: int = 12, seed: int = 42, n_cascade_levels: int = 6):
        if n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members, self.seed, self.n_cascade_levels = n_members, seed, n_cascade_levels
        self.version = (f"pysteps-{importlib.metadata.version('pysteps')}-steps-{n_members}members"
                        f"-seed{seed}-{n_cascade_levels}levels")

    def _one(self, sequence_mm_h: np.ndarray, seed: int) -> np.ndarray:
        from pysteps import nowcasts

        def nowcast(dbr, velocity):
            members = nowcasts.get_method("steps")(
                dbr[-3:], velocity, N_LEADS, n_ens_members=self.n_members, n_cascade_levels=self.n_cascade_levels,
                precip_thr=cascade.RAIN_THRESHOLD_DBR, kmperpixel=KM_PER_PIXEL,
                timestep=SCAN_INTERVAL.total_seconds() / 60, seed=seed)
            return cascade.to_mm_h(members).mean(axis=0)

        return cascade.run(sequence_mm_h, N_LEADS, nowcast)

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        if not len(x):
            return np.zeros((0, N_LEADS) + x.shape[2:], np.float32)
        # Every issue time is seeded with ``seed``: its forecast does not depend on the batch it is in.
        return np.stack([self._one(seq, self.seed) for seq in x])


@register("steps-mean")
def make_steps_mean(n_members: int = 12, seed: int = 42, n_cascade_levels: int = 6) -> StepsMean:
    return StepsMean(n_members, seed, n_cascade_levels)
