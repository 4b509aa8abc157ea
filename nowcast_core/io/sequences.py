"""Forecast windows from time-ordered scans: issue times, their four input scans and what followed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from nowcast_core.contract import GRID_SHAPE, N_INPUTS
from nowcast_core.io.frames import Frame, consecutive_windows, read_folder
from nowcast_core.io.scale import pixel_to_rain_rate


def rain_rates(frames: Sequence[Frame]) -> np.ndarray:
    """float32 (n, H, W) rain rates of scans, NaN where the radar saw nothing."""
    out = np.stack([pixel_to_rain_rate(f.frame) for f in frames])
    for k, f in enumerate(frames):
        out[k][f.nodata] = np.nan
    return out


def frame_sequences(frames: Sequence[Frame], n_after: int = 0) -> tuple[list[datetime], np.ndarray, np.ndarray]:
    """Issue times among time-ordered scans with their inputs and, with ``n_after``, the scans that followed.

    Returns issue times, inputs (n, 4, H, W) and observations (n, n_after, H, W), rain rates in mm/h.
    """
    starts = consecutive_windows([f.scan_time for f in frames], N_INPUTS + n_after)
    if not starts:
        return [], np.zeros((0, N_INPUTS) + GRID_SHAPE, np.float32), np.zeros((0, n_after) + GRID_SHAPE, np.float32)
    rates = rain_rates(frames)
    issue_times = [frames[s + N_INPUTS - 1].scan_time for s in starts]
    inputs = np.stack([rates[s:s + N_INPUTS] for s in starts])
    observed = np.stack([rates[s + N_INPUTS:s + N_INPUTS + n_after] for s in starts])
    return issue_times, inputs, observed


def folder_sequences(folder: str | Path, n_after: int = 0) -> tuple[list[datetime], np.ndarray, np.ndarray]:
    """:func:`frame_sequences` of the valid scans of a folder."""
    return frame_sequences(read_folder(folder), n_after)
