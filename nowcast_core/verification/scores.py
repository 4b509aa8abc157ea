"""Verification of forecasts against the scans later observed.

Scores are kept as counts so that any aggregate is a sum of counts, never a mean of
ratios: per run and lead, the contingency table (hits, misses, false alarms, correct
negatives) at each threshold, and the sum of absolute errors over the valid pixels.
Scores are computed from the summed tables by pysteps' verification module. Pixels where the radar saw
nothing (NaN in the observation) are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nowcast_core.contract import THRESHOLDS_MM_H

COUNT_NAMES = ("hits", "misses", "false_alarms", "correct_negatives")


def _detcat():
    from pysteps.verification import detcatscores

    return detcatscores


#: The scores of a pool of forecasts, as every part of the system names them (one key scheme):
#: ``n_forecasts``, ``mae_mm_h``, ``mean_forecast_mm_h``, ``mean_observed_mm_h`` and, per
#: threshold, ``csi_<thr>``, ``pod_<thr>``, ``far_<thr>`` (``csi_0.1``, ``csi_1``, ``csi_5``, ``csi_10``).
CATEGORICAL_SCORES = ("csi", "pod", "far")


def score_key(score: str, threshold_mm_h: float) -> str:
    """``csi_1``, ``pod_0.1``, ...: the key of a categorical score at a threshold."""
    return f"{score}_{threshold_mm_h:g}"


@dataclass
class LeadCounts:
    """Additive verification counts of forecasts at one lead (or any pool of them).

    ``forecast_sum`` and ``observed_sum`` (mm/h summed over the valid pixels) are None where
    they were not kept (the stored verification keeps counts and absolute errors only);
    :meth:`summary` then leaves the mean rates out.
    """

    n_forecasts: int = 0
    n_pixels: int = 0
    abs_error_sum: float = 0.0
    forecast_sum: float | None = 0.0
    observed_sum: float | None = 0.0
    contingency: dict[float, dict[str, int]] = field(
        default_factory=lambda: {thr: dict.fromkeys(COUNT_NAMES, 0) for thr in THRESHOLDS_MM_H})

    def add(self, other: "LeadCounts") -> None:
        self.n_forecasts += other.n_forecasts
        self.n_pixels += other.n_pixels
        self.abs_error_sum += other.abs_error_sum
        self.forecast_sum = None if None in (self.forecast_sum, other.forecast_sum) else self.forecast_sum + other.forecast_sum
        self.observed_sum = None if None in (self.observed_sum, other.observed_sum) else self.observed_sum + other.observed_sum
        for thr, counts in other.contingency.items():
            mine = self.contingency.setdefault(thr, dict.fromkeys(COUNT_NAMES, 0))
            for name in COUNT_NAMES:
                mine[name] += counts[name]

    def _mean(self, total: float | None) -> float:
        return total / self.n_pixels if self.n_pixels and total is not None else float("nan")

    @property
    def mae_mm_h(self) -> float:
        return self._mean(self.abs_error_sum)

    def scores(self, threshold_mm_h: float) -> dict[str, float]:
        """CSI, POD and FAR at a threshold (pysteps' formulas on the summed table)."""
        c = self.contingency[threshold_mm_h]
        table = {"thr": threshold_mm_h, "axis": None, **{k: np.array(v) for k, v in c.items()}}
        with np.errstate(divide="ignore", invalid="ignore"):
            s = _detcat().det_cat_fct_compute(table, scores=[name.upper() for name in CATEGORICAL_SCORES])
        return {k.lower(): float(v) for k, v in s.items()}

    def csi(self, threshold_mm_h: float) -> float:
        return self.scores(threshold_mm_h)["csi"]

    def summary(self, digits: int | None = None) -> dict[str, float | int | None]:
        """The scores in the one key scheme (see :data:`CATEGORICAL_SCORES`); NaN becomes None
        and values are rounded to ``digits`` when given."""

        def clean(x: float) -> float | None:
            if x is None or not np.isfinite(x):
                return None
            return round(float(x), digits) if digits is not None else float(x)

        row: dict[str, float | int | None] = {"n_forecasts": self.n_forecasts, "mae_mm_h": clean(self.mae_mm_h)}
        if self.forecast_sum is not None and self.observed_sum is not None:
            row["mean_forecast_mm_h"] = clean(self._mean(self.forecast_sum))
            row["mean_observed_mm_h"] = clean(self._mean(self.observed_sum))
        for thr in sorted(self.contingency):
            for name, value in self.scores(thr).items():
                row[score_key(name, thr)] = clean(value)
        return row


def lead_counts(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray,
                thresholds_mm_h: Sequence[float] = THRESHOLDS_MM_H) -> LeadCounts:
    """Counts of one forecast field against one observed field (NaN observed = no data)."""
    f = np.asarray(forecast_mm_h, dtype=np.float64)
    o = np.asarray(observed_mm_h, dtype=np.float64)
    valid = np.isfinite(o) & np.isfinite(f)
    out = LeadCounts(n_forecasts=1, n_pixels=int(valid.sum()), abs_error_sum=float(np.abs(f[valid] - o[valid]).sum()),
                     forecast_sum=float(f[valid].sum()), observed_sum=float(o[valid].sum()), contingency={})
    f, o = f[valid], o[valid]
    for thr in thresholds_mm_h:
        # Counted here, not with pysteps' det_cat_fct_accum: pysteps thresholds with ``>``, the
        # feed's spec and the reference scores with ``>=`` (and stored rates sit on 0.01 steps).
        fy, oy = f >= thr, o >= thr
        out.contingency[thr] = {"hits": int(np.count_nonzero(fy & oy)), "misses": int(np.count_nonzero(~fy & oy)),
                                "false_alarms": int(np.count_nonzero(fy & ~oy)),
                                "correct_negatives": int(np.count_nonzero(~fy & ~oy))}
    return out


def counts_per_lead(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray,
                    lead_minutes: Iterable[int]) -> dict[int, LeadCounts]:
    """Pooled counts per lead of forecasts (n, L, H, W) against observations (n, L, H, W)."""
    pooled = {}
    for k, lead in enumerate(lead_minutes):
        total = LeadCounts()
        for f, o in zip(forecast_mm_h[:, k], observed_mm_h[:, k], strict=True):
            total.add(lead_counts(f, o))
        pooled[lead] = total
    return pooled


def scores_per_lead(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray,
                    lead_minutes: Iterable[int] | None = None) -> list[dict]:
    """Scores of forecasts (n, L, H, W) against observations (n, L, H, W), one dict per lead:
    ``lead_minutes`` and :meth:`LeadCounts.summary` of the counts pooled over all pixels and
    forecasts (the mean forecast and observed rates show a forecast that scores a low MAE by
    fading the rain). Lead k defaults to 10 k minutes."""
    f = np.asarray(forecast_mm_h, dtype=np.float64)
    leads = list(lead_minutes) if lead_minutes is not None else [10 * (k + 1) for k in range(f.shape[1])]
    return [{"lead_minutes": lead, **counts.summary()} for lead, counts in counts_per_lead(f, observed_mm_h, leads).items()]


def competition_score(forecast_mm_h: np.ndarray, observed_mm_h: np.ndarray,
                      pixels: Sequence[tuple[int, int]], wet_mm_h: float = 0.1) -> dict[str, float]:
    """The KHNP competition score MAE / CSI at the dam pixels (lower is better).

    MAE in mm/h over the dam pixels whose observed rate is >= ``wet_mm_h``; CSI at
    ``wet_mm_h`` over the dam pixels. Inputs are (n, H, W) fields at one lead (+10 min).
    """
    rows, cols = np.array(pixels).T
    f = np.asarray(forecast_mm_h, dtype=np.float64)[:, rows, cols]
    o = np.asarray(observed_mm_h, dtype=np.float64)[:, rows, cols]
    wet = o >= wet_mm_h
    mae = float(np.abs(f[wet] - o[wet]).mean()) if wet.any() else float("nan")
    hits = np.count_nonzero((f >= wet_mm_h) & wet)
    denom = np.count_nonzero((f >= wet_mm_h) | wet)
    csi = hits / denom if denom else float("nan")
    return {"mae_mm_h": mae, "csi": csi, "score": mae / csi if csi else float("inf")}
