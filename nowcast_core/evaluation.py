"""Forecasting and scoring folders of scans offline (``nowcast predict`` / ``nowcast evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from nowcast_core.forecasters import LEAD_MINUTES, N_INPUTS, N_LEADS, Forecaster
from nowcast_core.frames import Frame, consecutive_windows, pixel_to_rain_rate, read_folder
from nowcast_core.verification import THRESHOLDS_MM_H, LeadCounts, competition_score, counts_per_lead


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
        return [], np.zeros((0, N_INPUTS, 120, 120), np.float32), np.zeros((0, n_after, 120, 120), np.float32)
    rates = rain_rates(frames)
    issue_times = [frames[s + N_INPUTS - 1].scan_time for s in starts]
    inputs = np.stack([rates[s:s + N_INPUTS] for s in starts])
    observed = np.stack([rates[s + N_INPUTS:s + N_INPUTS + n_after] for s in starts])
    return issue_times, inputs, observed


def folder_sequences(folder: str | Path, n_after: int = 0) -> tuple[list[datetime], np.ndarray, np.ndarray]:
    """:func:`frame_sequences` of the valid scans of a folder."""
    return frame_sequences(read_folder(folder), n_after)


def forecast_batched(forecaster: Forecaster, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    """``forecaster`` over (n, 4, H, W) inputs, ``batch`` issue times at a time: (n, 6, H, W)."""
    if not len(inputs):
        return np.zeros((0, N_LEADS) + inputs.shape[2:], np.float32)
    return np.concatenate([forecaster.forecast(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def predict_folder(folder: str | Path, forecaster: Forecaster, batch: int = 32) -> tuple[list[datetime], np.ndarray]:
    """Forecasts from every scan of ``folder`` that has its three predecessors: (issue times, (n, 6, H, W))."""
    issue_times, inputs, _ = folder_sequences(folder)
    return issue_times, forecast_batched(forecaster, inputs, batch)


def evaluate_folders(folders: Sequence[str | Path], forecasters: Sequence[Forecaster],
                     dam_pixels: Sequence[tuple[int, int]], progress=None) -> list[dict]:
    """Per method and lead: CSI/POD/FAR at 0.1, 1, 5, 10 mm/h, MAE, and the competition score at +10.

    Every scan with three predecessors and six successors in its folder is a forecast start;
    counts are pooled over all starts of all folders.
    """
    pooled = {(f.name, lead): LeadCounts() for f in forecasters for lead in LEAD_MINUTES}
    first_lead: dict[str, tuple[list, list]] = {f.name: ([], []) for f in forecasters}
    n_starts = 0
    for folder in folders:
        _, inputs, observed = folder_sequences(folder, N_LEADS)
        if not len(inputs):
            continue
        n_starts += len(inputs)
        for forecaster in forecasters:
            forecast = forecast_batched(forecaster, inputs)
            for lead, counts in counts_per_lead(forecast, observed, LEAD_MINUTES).items():
                pooled[forecaster.name, lead].add(counts)
            first_lead[forecaster.name][0].append(forecast[:, 0])
            first_lead[forecaster.name][1].append(observed[:, 0])
        if progress is not None:
            progress(folder)
    rows = []
    for forecaster in forecasters:
        f10, o10 = first_lead[forecaster.name]
        comp = competition_score(np.concatenate(f10), np.nan_to_num(np.concatenate(o10)), dam_pixels) if f10 else None
        for lead in LEAD_MINUTES:
            c = pooled[forecaster.name, lead]
            row = {"method": forecaster.name, "model_version": forecaster.version, "lead_minutes": lead,
                   "n_forecasts": c.n_forecasts, "mae_mm_h": round(c.mae_mm_h, 4)}
            for thr in THRESHOLDS_MM_H:
                s = c.scores(thr)
                for name in ("csi", "pod", "far"):
                    row[f"{name}_{thr:g}"] = None if not np.isfinite(s[name]) else round(s[name], 4)
            row["competition_score"] = round(comp["score"], 4) if comp and lead == 10 else None
            rows.append(row)
    return rows
