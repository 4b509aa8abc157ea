"""Can a scan be real weather? Outages, saturation and impossible jumps, in words.

A scan that passes the file contract can still be no weather at all: a radar outage (most
of the grid without coverage), a saturated receiver (pixels stuck at the top of the scale)
or a jump from the scan 10 minutes before that no weather makes. Such scans are registered
(nothing is lost) with their ``quality`` in words; every forecast that uses one stores it
as its ``input_quality``, and alerts are only raised from runs whose inputs are all "ok".

The default thresholds were chosen on the real radar events in ``shared/data/radar``
(56 folders, 2,424 scans, 2,368 consecutive pairs), none of which they flag:

- coverage: no scan there has any no-data pixel; an outage is more than half the grid;
- saturation: no pixel there reaches p = 250 (the highest is 241); saturated is more than
  2 % of the covered pixels at p >= 250 (about 58.5 dBZ, 150 mm/h);
- jumps between consecutive scans: the wet (>= 0.1 mm/h) fraction changed by at most 0.35
  and the mean rain rate by at most 2.5 mm/h; impossible is a change above 0.6 or 10 mm/h.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from nowcast_core.contract import WET_MM_H
from nowcast_core.io import pixel_to_rain_rate
from nowcast_core.times import iso_minutes

OK = "ok"
#: Pixel values at the top of the scale (>= 58.5 dBZ, >= ~150 mm/h).
SATURATION_PIXEL = 250


@dataclass(frozen=True)
class QualityThresholds:
    """Limits beyond which a scan cannot be real weather (settings ``max_*``)."""

    max_nodata_fraction: float = 0.5
    max_saturated_fraction: float = 0.02
    max_wet_fraction_jump: float = 0.6
    max_mean_rate_jump_mm_h: float = 10.0

    @classmethod
    def from_settings(cls, settings) -> "QualityThresholds":
        return cls(settings.max_nodata_fraction, settings.max_saturated_fraction, settings.max_wet_fraction_jump,
                   settings.max_mean_rate_jump_mm_h)


@dataclass(frozen=True)
class ScanStats:
    """What the checks need of one scan; fractions of the grid (nodata) or of its covered pixels."""

    nodata_fraction: float
    wet_fraction: float
    mean_mm_h: float
    saturated_fraction: float


def scan_stats(frame: np.ndarray, nodata: np.ndarray) -> ScanStats:
    covered = ~nodata
    if not covered.any():
        return ScanStats(1.0, 0.0, 0.0, 0.0)
    rain = pixel_to_rain_rate(frame)[covered]
    saturated = frame[covered] >= SATURATION_PIXEL
    return ScanStats(nodata_fraction=float(nodata.mean()), wet_fraction=float((rain >= WET_MM_H).mean()),
                     mean_mm_h=float(rain.mean()), saturated_fraction=float(saturated.mean()))


def assess(stats: ScanStats, previous: ScanStats | None, limits: QualityThresholds) -> str:
    """``"ok"``, or every reason the scan cannot be real weather, in words.

    ``previous`` is the scan 10 minutes before, if registered and itself "ok" (a jump back
    from a bad scan is not the new scan's fault).
    """
    if stats.nodata_fraction > limits.max_nodata_fraction:
        return (f"outage: {stats.nodata_fraction:.0%} of the grid without coverage "
                f"(limit {limits.max_nodata_fraction:.0%})")
    reasons = []
    if stats.saturated_fraction > limits.max_saturated_fraction:
        reasons.append(f"saturated: {stats.saturated_fraction:.0%} of covered pixels at p >= {SATURATION_PIXEL} "
                       f"(limit {limits.max_saturated_fraction:.0%})")
    if previous is not None:
        wet_jump = stats.wet_fraction - previous.wet_fraction
        if abs(wet_jump) > limits.max_wet_fraction_jump:
            reasons.append(f"jump: wet area {previous.wet_fraction:.0%} -> {stats.wet_fraction:.0%} in 10 min "
                           f"(limit {limits.max_wet_fraction_jump:.0%} change)")
        rate_jump = stats.mean_mm_h - previous.mean_mm_h
        if abs(rate_jump) > limits.max_mean_rate_jump_mm_h:
            reasons.append(f"jump: mean rain rate {previous.mean_mm_h:.1f} -> {stats.mean_mm_h:.1f} mm/h in 10 min "
                           f"(limit {limits.max_mean_rate_jump_mm_h:g} mm/h change)")
    return "; ".join(reasons) or OK


def input_quality(inputs: Sequence[tuple[str, datetime, str]]) -> str:
    """A run's input quality from its inputs' ``(label, scan time, quality)``: "ok" or which are not and why."""
    bad = [f"{label} ({iso_minutes(t)}) {quality}" for label, t, quality in inputs if quality != OK]
    return "; ".join(bad) or OK
