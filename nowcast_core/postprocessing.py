"""Post-processing of deterministic forecasts: probability matching of rain intensities.

A forecast trained on pixel errors hedges: where heavy rain is uncertain it forecasts the
middle, and the storm's core fades with lead. Probability matching (as in pysteps' S-PROG and
STEPS) keeps the forecast's ranks (where it rains more, where less) and gives it the intensity
distribution of a reference field, here the newest observed scan: the rain the radar sees now
is the best estimate of how intense the next hour's rain is, wherever it will be.

``weight`` blends the matched and the raw forecast in mm/h (0: raw, 1: fully matched).
``smoothing_px_per_lead`` smooths the reference for lead k (1..6) by a Gaussian of k times that
many pixels before its distribution is taken: the intensities a field keeps once its position is
uncertain by that much (the small, intense cores average out first). The shipped model's
configuration records both (``RainNetConfig.probability_matching``, ``matching_smoothing_px_per_lead``).
"""

from __future__ import annotations

import numpy as np


def match_intensity(forecast_mm_h: np.ndarray, reference_mm_h: np.ndarray, weight: float = 1.0,
                    smoothing_px_per_lead: float = 0.0) -> np.ndarray:
    """Forecasts (n, L, H, W) matched to the distribution of one reference field per forecast (n, H, W).

    NaN in the reference counts as dry. A forecast field, or a reference, without rain is left as
    it is (there is no distribution to match). Returns float32 >= 0 of the forecast's shape.
    """
    from pysteps.postprocessing.probmatching import nonparam_match_empirical_cdf
    from scipy.ndimage import gaussian_filter

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"probability-matching weight must be in [0, 1], got {weight}")
    f = np.maximum(np.nan_to_num(np.asarray(forecast_mm_h, dtype=np.float64), nan=0.0), 0.0)
    ref = np.maximum(np.nan_to_num(np.asarray(reference_mm_h, dtype=np.float64), nan=0.0), 0.0)
    if f.ndim != 4 or ref.shape != (f.shape[0],) + f.shape[2:]:
        raise ValueError(f"forecasts (n, L, H, W) and references (n, H, W) expected, got {f.shape} and {ref.shape}")
    out = f.copy()
    if weight == 0.0:
        return out.astype(np.float32)
    for i in range(len(f)):
        if not np.any(ref[i] > 0):
            continue
        for k in range(f.shape[1]):
            if np.any(f[i, k] > 0):
                target = gaussian_filter(ref[i], smoothing_px_per_lead * (k + 1)) if smoothing_px_per_lead else ref[i]
                matched = nonparam_match_empirical_cdf(f[i, k], target)
                out[i, k] = weight * matched + (1.0 - weight) * f[i, k]
    return np.maximum(out, 0.0).astype(np.float32)
