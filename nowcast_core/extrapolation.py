"""Extrapolation nowcasts: persistence, and pysteps' Lucas-Kanade motion with semi-Lagrangian advection.

Motion is estimated on ln(R + 0.01) of the four input scans; the newest scan is advected
six 10-minute steps. Pixels advected in from outside the grid have no source (NaN in
pysteps): they become 0 mm/h, or, with ``fill_inflow``, the newest scan itself
(persistence), a better prior for a learned correction than "dry".

Optionally lead k (1..6) is smoothed with a Gaussian of standard deviation
``smoothing_px_per_lead * k`` pixels (mirror boundary): small scales lose their
predictability first (the idea behind S-PROG in pysteps). RainNet's conditioning input is
``extrapolate_batch(..., fill_inflow=True, smoothing)`` with the smoothing its configuration records.

Used by the ``pysteps``, ``persistence``, ``extrapolation-filled``, ``sprog`` and ``steps-mean``
forecasters (:func:`motion_field`) and by RainNet; imports neither.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nowcast_core.contract import N_LEADS
from nowcast_core.io.scale import LOG_OFFSET


def persistence(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS) -> np.ndarray:
    """The newest scan at every lead: (n, 4, H, W) -> (n, n_leads, H, W), NaN -> 0, >= 0."""
    x = np.asarray(rain_rate_mm_h, dtype=np.float32)
    last = np.maximum(np.nan_to_num(x[:, -1], nan=0.0), 0.0)
    return np.repeat(last[:, None], n_leads, axis=1)


def motion_field(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """Lucas-Kanade motion (2, H, W), pixels per scan interval, of one sequence (4, H, W) in mm/h,
    estimated on ln(R + 0.01); NaN (no data) pixels are left out. pysteps' warning that its outlier
    detection met a singular matrix (few tracked features; it then keeps them all) is not shown: it is
    routine on sparse rain and says nothing an operator can act on."""
    import warnings

    from pysteps import motion

    log_seq = np.log(np.asarray(rain_rate_mm_h, dtype=np.float64) + LOG_OFFSET)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*during outlier detection", category=UserWarning)
        return motion.get_method("LK")(log_seq, verbose=False)


def extrapolate(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS, fill_inflow: bool = False,
                velocity: np.ndarray | None = None) -> np.ndarray:
    """Lucas-Kanade + semi-Lagrangian nowcast of one sequence (4, H, W) -> (n_leads, H, W).

    NaN (no data) input pixels are left out of the motion estimate; ``fill_inflow`` gives
    areas with no upstream source the last scan's value instead of 0 mm/h. ``velocity``: the
    sequence's :func:`motion_field`, if already computed.
    """
    from pysteps import nowcasts

    seq = np.asarray(rain_rate_mm_h, dtype=np.float64)
    last = np.nan_to_num(seq[-1], nan=0.0)
    if not np.any(last > 0):
        return np.zeros((n_leads,) + last.shape, dtype=np.float32)
    out = nowcasts.get_method("extrapolation")(last, motion_field(seq) if velocity is None else velocity, n_leads)
    out = np.where(np.isfinite(out), out, last[None] if fill_inflow else 0.0)
    return np.clip(out, 0.0, None).astype(np.float32)


def upstream_source(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS) -> np.ndarray:
    """Where extrapolation has an upstream source: bool (n_leads, H, W) for one sequence (4, H, W).

    False where the semi-Lagrangian back-trajectory along the Lucas-Kanade motion leaves the
    grid: rain there can only come from outside, which no extrapolation sees. All True for a
    dry newest scan (no motion is estimated; nothing is advected)."""
    from pysteps import nowcasts

    seq = np.asarray(rain_rate_mm_h, dtype=np.float64)
    if not np.any(np.nan_to_num(seq[-1], nan=0.0) > 0):
        return np.ones((n_leads,) + seq.shape[1:], dtype=bool)
    ones = np.ones(seq.shape[1:])
    return np.isfinite(nowcasts.get_method("extrapolation")(ones, motion_field(seq), n_leads))


def growth_tendency(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS, smoothing_px: float = 3.0,
                    velocity: np.ndarray | None = None) -> np.ndarray:
    """How fast the rain grew along its motion, carried forward: (n_leads, H, W) for one sequence (4, H, W).

    ln(1 + R) of the newest scan minus that of the scan before it advected one step along the
    Lucas-Kanade motion (R in mm/h: per 10 minutes), Gaussian-smoothed by ``smoothing_px`` (the
    growth of cells, not of pixels), then advected 1 .. ``n_leads`` steps like the rain. 0 where
    the scan before has no upstream source or the result leaves the grid, and everywhere for a dry
    newest scan. :func:`apply_growth` lets the extrapolation go on growing or decaying by it. ``velocity``:
    the sequence's :func:`motion_field`, if already computed."""
    from pysteps import extrapolation
    from scipy.ndimage import gaussian_filter

    seq = np.maximum(np.nan_to_num(np.asarray(rain_rate_mm_h, dtype=np.float64), nan=0.0), 0.0)
    if not np.any(seq[-1] > 0):
        return np.zeros((n_leads,) + seq.shape[1:], dtype=np.float32)
    advect = extrapolation.get_method("semilagrangian")
    velocity = motion_field(seq) if velocity is None else velocity
    before = advect(np.log1p(seq[-2]), velocity, 1)[0]
    growth = np.where(np.isfinite(before), np.log1p(seq[-1]) - before, 0.0)
    carried = advect(gaussian_filter(growth, smoothing_px, mode="reflect"), velocity, n_leads)
    return np.where(np.isfinite(carried), carried, 0.0).astype(np.float32)


def apply_growth(rain_rate_mm_h: np.ndarray, growth: np.ndarray, weight: float) -> np.ndarray:
    """Rain rates (mm/h) grown by ``weight`` times a :func:`growth_tendency` (same shape): on ln(1 + R)."""
    return np.maximum((np.asarray(rain_rate_mm_h, np.float32) + 1.0) * np.exp(weight * growth) - 1.0,
                      0.0).astype(np.float32)


def smooth_leads(rain_rate_mm_h: np.ndarray, smoothing_px_per_lead: float) -> np.ndarray:
    """Gaussian smoothing of leads (n_leads, H, W): lead k gets sigma = ``smoothing_px_per_lead * k``."""
    from scipy.ndimage import gaussian_filter

    out = np.asarray(rain_rate_mm_h, dtype=np.float32).copy()
    if smoothing_px_per_lead > 0:
        for k in range(len(out)):
            out[k] = gaussian_filter(out[k], smoothing_px_per_lead * (k + 1), mode="reflect")
    return np.maximum(out, 0.0)


class DirectInputs(NamedTuple):
    """What a direct RainNet reads besides the scans, each (n, n_leads, H, W) mm/h or None:
    ``extrapolation``, its conditioning (inflow filled, smoothed); ``growth``, the :func:`growth_tendency`;
    ``sharp``, the same extrapolation unsmoothed, whose cores its decisions may keep
    (``RainNetConfig.core_probability``)."""

    extrapolation: np.ndarray
    growth: np.ndarray | None
    sharp: np.ndarray | None


def direct_inputs(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS, smoothing_px_per_lead: float = 0.0,
                  growth: bool = True, sharp: bool = False) -> DirectInputs:
    """:class:`DirectInputs` over a batch (n, 4, H, W), all from one motion field per sequence; None for
    the growth without ``growth`` and for the unsmoothed extrapolation without ``sharp``."""
    x = np.asarray(rain_rate_mm_h)
    if not growth and not sharp:
        return DirectInputs(extrapolate_batch(x, n_leads, smoothing_px_per_lead), None, None)
    extrapolations = np.zeros((len(x), n_leads) + x.shape[2:], dtype=np.float32)
    tendencies = np.zeros_like(extrapolations) if growth else None
    unsmoothed = np.zeros_like(extrapolations) if sharp else None
    for i, seq in enumerate(x):
        seq = np.maximum(np.nan_to_num(np.asarray(seq, dtype=np.float64), nan=0.0), 0.0)
        if not np.any(seq[-1] > 0):  # dry: no motion, nothing to extrapolate or grow
            continue
        velocity = motion_field(seq)
        moved = extrapolate(seq, n_leads, True, velocity)
        extrapolations[i] = smooth_leads(moved, smoothing_px_per_lead)
        if growth:
            tendencies[i] = growth_tendency(seq, n_leads, velocity=velocity)
        if sharp:
            unsmoothed[i] = moved
    return DirectInputs(extrapolations, tendencies, unsmoothed)


def extrapolate_with_growth(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS, smoothing_px_per_lead: float = 0.0,
                            growth: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A direct RainNet's conditioning over a batch (n, 4, H, W): the :func:`extrapolate_batch` default
    (inflow filled, smoothed) and, with ``growth``, the :func:`growth_tendency`, both (n, n_leads, H, W)
    from one motion field per sequence; None instead of the growth without ``growth``
    (:func:`direct_inputs` without the unsmoothed extrapolation)."""
    inputs = direct_inputs(rain_rate_mm_h, n_leads, smoothing_px_per_lead, growth)
    return inputs.extrapolation, inputs.growth


def extrapolate_batch(rain_rate_mm_h: np.ndarray, n_leads: int = N_LEADS, smoothing_px_per_lead: float = 0.0,
                      fill_inflow: bool = True) -> np.ndarray:
    """:func:`extrapolate` (then :func:`smooth_leads`) over a batch: (n, 4, H, W) -> (n, n_leads, H, W).

    The default is RainNet's conditioning: inflow filled with the newest scan, NaN input as dry.
    """
    x = np.asarray(rain_rate_mm_h)
    if len(x) == 0:
        return np.zeros((0, n_leads) + x.shape[2:], dtype=np.float32)
    out = []
    for seq in x:
        if fill_inflow:
            seq = np.maximum(np.nan_to_num(np.asarray(seq, dtype=np.float64), nan=0.0), 0.0)
        out.append(smooth_leads(extrapolate(seq, n_leads, fill_inflow=fill_inflow), smoothing_px_per_lead))
    return np.stack(out)
