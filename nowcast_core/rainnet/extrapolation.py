"""Optical-flow extrapolation used as RainNet's optional conditioning input.

The motion field is pysteps' Lucas-Kanade on ln(R + 0.01) of the four input scans (as
in ``nowcast_core.forecasters.optical_flow``); the newest scan is advected by pysteps'
semi-Lagrangian scheme. Where the advected field has no source (rain that would come
from outside the grid, NaN in pysteps), this module fills in the newest scan itself
(persistence) rather than zero: for a learned correction a "same as now" prior at the
upstream border is more informative than "dry".
"""

from __future__ import annotations

import logging
import os

import numpy as np

from nowcast_core.rainnet.preprocess import LOG_OFFSET


def _pysteps():
    os.environ.setdefault("PYSTEPS_QUIET", "1")
    logging.getLogger("pysteps").setLevel(logging.WARNING)
    from pysteps import motion, nowcasts

    return motion, nowcasts


def extrapolate_filled(rain_rate_mm_h: np.ndarray, n_leads: int = 6) -> np.ndarray:
    """Extrapolate one sequence of scans, filling inflow areas with the newest scan.

    Parameters
    ----------
    rain_rate_mm_h : float array (4, H, W), scans t-30 .. t in mm/h, NaN = no data (dry).
    n_leads : number of 10-minute leads.

    Returns
    -------
    float32 array (n_leads, H, W), finite rain rates >= 0 in mm/h.
    """
    seq = np.nan_to_num(np.asarray(rain_rate_mm_h, dtype=np.float64), nan=0.0)
    seq = np.maximum(seq, 0.0)
    last = seq[-1]
    if not np.any(last > 0):
        return np.zeros((n_leads,) + last.shape, dtype=np.float32)
    motion, nowcasts = _pysteps()
    velocity = motion.get_method("LK")(np.log(seq + LOG_OFFSET), verbose=False)
    out = nowcasts.get_method("extrapolation")(last, velocity, n_leads)
    out = np.where(np.isfinite(out), out, last[None])
    return np.maximum(out, 0.0).astype(np.float32)


def extrapolate_batch(rain_rate_mm_h: np.ndarray, n_leads: int = 6) -> np.ndarray:
    """:func:`extrapolate_filled` over a batch: (n, 4, H, W) -> (n, n_leads, H, W)."""
    x = np.asarray(rain_rate_mm_h)
    if len(x) == 0:
        return np.zeros((0, n_leads) + x.shape[2:], dtype=np.float32)
    return np.stack([extrapolate_filled(seq, n_leads) for seq in x])
