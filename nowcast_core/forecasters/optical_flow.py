"""Optical flow: pysteps Lucas-Kanade motion, semi-Lagrangian extrapolation.

Motion is estimated on ln(R + 0.01) of the four input scans; the last scan is advected
six 10-minute steps. Pixels advected in from outside the grid (NaN) become 0 mm/h, or,
with ``fill_inflow``, the last scan itself (RainNet's conditioning input uses that).
"""

from __future__ import annotations

import importlib.metadata

import numpy as np

from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs
from nowcast_core.frames.scale import LOG_OFFSET


def extrapolate(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS, fill_inflow: bool = False) -> np.ndarray:
    """Lucas-Kanade + semi-Lagrangian nowcast of one sequence (4, H, W) -> (n_leads, H, W).

    NaN (no data) input pixels are left out of the motion estimate; ``fill_inflow`` gives
    areas with no upstream source the last scan's value instead of 0 mm/h.
    """
    from pysteps import motion, nowcasts

    seq = np.asarray(rain_rate_mm_h, dtype=np.float64)
    last = np.nan_to_num(seq[-1], nan=0.0)
    if not np.any(last > 0):
        return np.zeros((n_leads,) + last.shape, dtype=np.float32)
    log_seq = np.log(seq + LOG_OFFSET)
    velocity = motion.get_method("LK")(log_seq, verbose=False)
    out = nowcasts.get_method("extrapolation")(last, velocity, n_leads)
    out = np.where(np.isfinite(out), out, last[None] if fill_inflow else 0.0)
    return np.clip(out, 0.0, None).astype(np.float32)


class OpticalFlow:
    name = "pysteps"
    version = "pysteps-" + importlib.metadata.version("pysteps") + "-LK"

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        return np.stack([extrapolate(seq) for seq in x])


@register("pysteps")
def make_optical_flow() -> OpticalFlow:
    return OpticalFlow()
