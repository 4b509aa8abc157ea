"""Scores that see structure: the fractions skill score (FSS) and the area of heavy rain.

A forecast that blurs heavy rain into a smooth band can keep a good CSI at 1 mm/h and a low
MAE; these scores show it:

- FSS at 1 and 5 mm/h over 1, 5 and 15 km neighbourhoods (square windows of 1, 5 and 15
  pixels; one pixel is 1 km): 1 is perfect, 0 no skill. Keys ``fss_<thr>_<size>km``
  (``fss_1_1km`` .. ``fss_5_15km``).
- The area (pixels) at or above 5 mm/h in the forecast and in the observation, and their ratio:
  ``area_5_forecast_px``, ``area_5_observed_px``, ``area_ratio_5`` (forecast / observed).

As in :mod:`nowcast_core.verification.scores`, only additive sums are kept (:class:`StructureSums`),
so any pool of forecasts scores exactly as if its fields were one: FSS = 1 - sum (F - O)^2 /
sum (F^2 + O^2), F and O the fractions of the window's pixels at or above the threshold.
Pixels with no observation (NaN) are left out: they count neither in a window's fractions
(a window's fraction is over its valid pixels) nor in the sums. Thresholds use ``>=``, as CSI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

#: Thresholds (mm/h) and neighbourhood sizes (km = pixels) of the FSS.
FSS_THRESHOLDS_MM_H = (1.0, 5.0)
FSS_SIZES_KM = (1, 5, 15)
#: Threshold (mm/h) of the heavy-rain area.
AREA_THRESHOLD_MM_H = 5.0
KM_PER_PIXEL = 1

_SUM_NAMES = ("forecast_sq", "observed_sq", "product")


def fss_key(threshold_mm_h: float, size_km: int) -> str:
    """``fss_1_5km``: the key of the FSS at a threshold over a neighbourhood."""
    return f"fss_{threshold_mm_h:g}_{size_km}km"


def area_keys(threshold_mm_h: float = AREA_THRESHOLD_MM_H) -> tuple[str, str, str]:
    """``area_5_forecast_px``, ``area_5_observed_px``, ``area_ratio_5``."""
    t = f"{threshold_mm_h:g}"
    return f"area_{t}_forecast_px", f"area_{t}_observed_px", f"area_ratio_{t}"


def _zero_sums() -> dict[tuple[float, int], dict[str, float]]:
    return {(thr, size): dict.fromkeys(_SUM_NAMES, 0.0) for thr in FSS_THRESHOLDS_MM_H for size in FSS_SIZES_KM}


@dataclass
class StructureSums:
    """Additive sums of the structure scores of forecasts at one lead (or any pool of them)."""

    n_forecasts: int = 0
    area_forecast_px: int = 0
    area_observed_px: int = 0
    #: (threshold mm/h, size km) -> sums of F^2, O^2 and F O over the valid pixels.
    fss_sums: dict[tuple[float, int], dict[str, float]] = field(default_factory=_zero_sums)

    def add(self, other: "StructureSums") -> None:
        self.n_forecasts += other.n_forecasts
        self.area_forecast_px += other.area_forecast_px
        self.area_observed_px += other.area_observed_px
        for key, sums in other.fss_sums.items():
            mine = self.fss_sums.setdefault(key, dict.fromkeys(_SUM_NAMES, 0.0))
            for name in _SUM_NAMES:
                mine[name] += sums[name]

    def fss(self, threshold_mm_h: float, size_km: int) -> float:
        """FSS of the pool; NaN where neither forecast nor observation reaches the threshold."""
        s = self.fss_sums[threshold_mm_h, size_km]
        denom = s["forecast_sq"] + s["observed_sq"]
        if denom <= 0:
            return float("nan")
        return 1.0 - (s["forecast_sq"] - 2.0 * s["product"] + s["observed_sq"]) / denom

    @property
    def area_ratio(self) -> float:
        """Forecast area / observed area at :data:`AREA_THRESHOLD_MM_H`; NaN with no observed area."""
        return self.area_forecast_px / self.area_observed_px if self.area_observed_px else float("nan")

    def summary(self, digits: int | None = None) -> dict[str, float | int | None]:
        """The scores in the one key scheme; NaN becomes None, values rounded to ``digits`` when given."""

        def clean(x: float) -> float | None:
            if not np.isfinite(x):
                return None
            return round(float(x), digits) if digits is not None else float(x)

        row: dict[str, float | int | None] = {fss_key(thr, size): clean(self.fss(thr, size))
                                              for thr, size in sorted(self.fss_sums)}
        forecast_key, observed_key, ratio_key = area_keys()
        row[forecast_key] = self.area_forecast_px
        row[observed_key] = self.area_observed_px
        row[ratio_key] = clean(self.area_ratio)
        return row


def _fractions(exceeds: np.ndarray, valid: np.ndarray, size_px: int) -> np.ndarray:
    """Fraction of the valid pixels of each ``size_px`` window that exceed (0 where none is valid)."""
    from scipy.ndimage import uniform_filter

    if size_px == 1:
        return exceeds.astype(np.float64)
    n_valid = uniform_filter(valid.astype(np.float64), size_px, mode="constant", cval=0.0)
    n_exceed = uniform_filter(exceeds.astype(np.float64), size_px, mode="constant", cval=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_valid > 1e-9, n_exceed / n_valid, 0.0)


def structure_sums(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray) -> StructureSums:
    """Sums of one forecast field (H, W) against one observed field (NaN observed = no data)."""
    f = np.asarray(forecast_mm_h, dtype=np.float64)
    o = np.asarray(observed_mm_h, dtype=np.float64)
    valid = np.isfinite(f) & np.isfinite(o)
    f, o = np.where(valid, f, 0.0), np.where(valid, o, 0.0)
    out = StructureSums(n_forecasts=1,
                        area_forecast_px=int(np.count_nonzero(valid & (f >= AREA_THRESHOLD_MM_H))),
                        area_observed_px=int(np.count_nonzero(valid & (o >= AREA_THRESHOLD_MM_H))))
    for thr in FSS_THRESHOLDS_MM_H:
        f_exceeds, o_exceeds = valid & (f >= thr), valid & (o >= thr)
        for size in FSS_SIZES_KM:
            size_px = size // KM_PER_PIXEL
            ff = _fractions(f_exceeds, valid, size_px)[valid]
            of = _fractions(o_exceeds, valid, size_px)[valid]
            out.fss_sums[thr, size] = {"forecast_sq": float(np.dot(ff, ff)), "observed_sq": float(np.dot(of, of)),
                                       "product": float(np.dot(ff, of))}
    return out


def structure_per_lead(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray,
                       lead_minutes: Iterable[int]) -> dict[int, StructureSums]:
    """Pooled sums per lead of forecasts (n, L, H, W) against observations (n, L, H, W)."""
    pooled = {}
    for k, lead in enumerate(lead_minutes):
        total = StructureSums()
        for f, o in zip(forecast_mm_h[:, k], observed_mm_h[:, k], strict=True):
            total.add(structure_sums(f, o))
        pooled[lead] = total
    return pooled
