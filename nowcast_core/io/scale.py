"""Pixel scale of the feed (spec: ``radar-frames.md``).

``dBZ = (p - 0.5) * 70 / 255 - 10`` and Marshall-Palmer ``Z = 200 R^1.6`` with
``Z = 10^(dBZ/10)``. All functions are vectorised over numpy arrays.
"""

from __future__ import annotations

import numpy as np

ZR_A = 200.0
ZR_B = 1.6
DBZ_PER_PIXEL = 70.0 / 255.0
DBZ_OFFSET = -10.0
#: offset of the log scale ln(R + 0.01) used for motion estimation and by RainNet (mm/h)
LOG_OFFSET = 0.01


def pixel_to_dbz(pixel: np.ndarray) -> np.ndarray:
    """Reflectivity in dBZ of uint8 pixel values."""
    return (np.asarray(pixel, dtype=np.float32) - 0.5) * np.float32(DBZ_PER_PIXEL) + np.float32(DBZ_OFFSET)


def dbz_to_pixel(dbz: np.ndarray) -> np.ndarray:
    """Nearest uint8 pixel value of a reflectivity in dBZ (clipped to 0..255)."""
    p = (np.asarray(dbz, dtype=np.float64) - DBZ_OFFSET) / DBZ_PER_PIXEL + 0.5
    return np.clip(np.rint(p), 0, 255).astype(np.uint8)


def dbz_to_rain_rate(dbz: np.ndarray) -> np.ndarray:
    """Rain rate in mm/h from reflectivity in dBZ (Z = 200 R^1.6)."""
    z = np.power(10.0, np.asarray(dbz, dtype=np.float64) / 10.0)
    return np.power(z / ZR_A, 1.0 / ZR_B).astype(np.float32)


def rain_rate_to_dbz(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """Reflectivity in dBZ of a rain rate in mm/h; -inf for zero rain."""
    r = np.asarray(rain_rate_mm_h, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return (10.0 * np.log10(ZR_A * np.power(r, ZR_B))).astype(np.float32)


def pixel_to_rain_rate(pixel: np.ndarray) -> np.ndarray:
    """Rain rate in mm/h (float32) of uint8 pixel values."""
    return dbz_to_rain_rate(pixel_to_dbz(pixel))


def rain_rate_to_pixel(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """Nearest uint8 pixel value of a rain rate in mm/h (0 mm/h maps to pixel 0)."""
    return dbz_to_pixel(rain_rate_to_dbz(np.maximum(rain_rate_mm_h, 0.0)))
