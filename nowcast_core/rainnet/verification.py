"""Verification scores per lead: CSI at rain-rate thresholds and MAE in mm/h."""

from __future__ import annotations

import numpy as np

THRESHOLDS_MM_H = (0.1, 1.0, 5.0)


def csi(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray, threshold_mm_h: float) -> float:
    """Critical success index: hits / (hits + misses + false alarms), counts summed over all pixels.

    NaN if neither forecast nor observation reaches the threshold anywhere.
    """
    f = np.asarray(forecast_mm_h) >= threshold_mm_h
    o = np.asarray(observed_mm_h) >= threshold_mm_h
    hits = np.count_nonzero(f & o)
    denom = np.count_nonzero(f | o)
    return float(hits / denom) if denom else float("nan")


def skill_per_lead(
    forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray, thresholds_mm_h=THRESHOLDS_MM_H
) -> list[dict]:
    """Scores of forecasts (n, L, H, W) against observations (n, L, H, W), one dict per lead.

    Keys: ``lead_minutes``, ``csi_<thr>`` for each threshold (e.g. ``csi_1``), ``mae`` (mm/h,
    over all pixels), ``mean_forecast`` and ``mean_observed`` (mm/h, to spot fading).
    """
    f = np.asarray(forecast_mm_h, dtype=np.float64)
    o = np.asarray(observed_mm_h, dtype=np.float64)
    rows = []
    for k in range(f.shape[1]):
        row = {"lead_minutes": 10 * (k + 1)}
        for thr in thresholds_mm_h:
            row[f"csi_{thr:g}"] = csi(f[:, k], o[:, k], thr)
        row["mae"] = float(np.mean(np.abs(f[:, k] - o[:, k])))
        row["mean_forecast"] = float(f[:, k].mean())
        row["mean_observed"] = float(o[:, k].mean())
        rows.append(row)
    return rows
