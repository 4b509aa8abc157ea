"""Optical flow: pysteps Lucas-Kanade motion, semi-Lagrangian extrapolation.

Motion is estimated on ln(R + 0.01) of the four input scans; the last scan is advected
six 10-minute steps. Pixels advected in from outside the grid (NaN) become 0 mm/h.
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs

LOG_OFFSET = 0.01


def extrapolate(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS) -> np.ndarray:
    """Lucas-Kanade + semi-Lagrangian nowcast of one sequence (4, H, W) -> (n_leads, H, W)."""
    from pysteps import motion, nowcasts

    seq = np.asarray(rain_rate_mm_h, dtype=np.float64)
    last = np.nan_to_num(seq[-1], nan=0.0)
    if not np.any(last > 0):
        return np.zeros((n_leads,) + last.shape, dtype=np.float32)
    log_seq = np.log(seq + LOG_OFFSET)
    velocity = motion.get_method("LK")(log_seq, verbose=False)
    out = nowcasts.get_method("extrapolation")(last, velocity, n_leads)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, None).astype(np.float32)


class OpticalFlow:
    name = "pysteps"
    version = "pysteps-" + importlib.metadata.version("pysteps") + "-LK"

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        return np.stack([extrapolate(seq) for seq in x])


@register("pysteps")
def make_optical_flow() -> OpticalFlow:
    return OpticalFlow()
