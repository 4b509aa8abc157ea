"""Exactly invertible transforms between feed pixels, rain rates and RainNet's inputs.

Chain (forward)::

    uint8 pixel --(frames.scale)--> dBZ --(Z = 200 R^1.6)--> rain rate R (mm/h)
    R --> ln(R + 0.01)                                   (the network's scale)
    4 scans t-30 .. t --> 4 channels, oldest first       (channels-last stack)
    120 x 120 --> reflect padding --> 128 x 128          (4 mirrored pixels each side)

and back: crop 128 -> 120, ``exp(x) - 0.01`` clipped at 0.

No-data choice
--------------
Pixels where the radar saw nothing (NaN rain rate, or ``nodata`` True) are filled with
``ln(0.01)``, i.e. *no rain*, before they reach the network. The network never sees NaN;
a radar hole is treated as a dry area. This is deliberate: the feed marks no-data only
beyond range or behind blockage, where the dams' catchments do not lie, and a dry fill
cannot create spurious rain.

Padding choice
--------------
120 is not a multiple of 16 (4 pooling levels), so inputs are mirror-padded to 128 in
preprocessing (numpy here, TensorFlow in the training graph: :func:`pad_tf`) and outputs
are cropped back. The model itself stays a plain 128 x 128 U-Net.
"""

from __future__ import annotations

import numpy as np

from nowcast_core.contract import GRID_SHAPE
from nowcast_core.io.scale import LOG_OFFSET, pixel_to_rain_rate

#: ln(0.01): the network's value for "no rain" and for no-data pixels.
NO_RAIN_LOG = float(np.log(LOG_OFFSET))
GRID_SIZE = GRID_SHAPE[0]
MODEL_SIZE = 128
PAD = (MODEL_SIZE - GRID_SIZE) // 2


def rain_rate_to_log(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """ln(R + 0.01) of rain rates in mm/h; NaN (no data) becomes ln(0.01), i.e. no rain."""
    r = np.asarray(rain_rate_mm_h, dtype=np.float32)
    r = np.where(np.isfinite(r), np.maximum(r, 0.0), 0.0)
    return np.log(r + np.float32(LOG_OFFSET)).astype(np.float32)


def log_to_rain_rate(log_rain: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rain_rate_to_log`: ``exp(x) - 0.01`` clipped at 0 (float32, finite)."""
    x = np.asarray(log_rain, dtype=np.float32)
    r = np.exp(np.clip(x, NO_RAIN_LOG, 10.0)) - np.float32(LOG_OFFSET)
    return np.maximum(r, 0.0).astype(np.float32)


def pixel_to_log(pixel: np.ndarray, nodata: np.ndarray | None = None) -> np.ndarray:
    """Network scale ln(R + 0.01) of uint8 feed pixels; ``nodata`` pixels become no rain."""
    r = pixel_to_rain_rate(pixel)
    if nodata is not None:
        r = np.where(nodata, np.nan, r)
    return rain_rate_to_log(r)


def stack_scans(scans: np.ndarray) -> np.ndarray:
    """Move the scan axis last: (..., T, H, W) -> (..., H, W, T), oldest scan first."""
    return np.moveaxis(np.asarray(scans), -3, -1)


def unstack_scans(channels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`stack_scans`: (..., H, W, T) -> (..., T, H, W)."""
    return np.moveaxis(np.asarray(channels), -1, -3)


def pad(channels: np.ndarray) -> np.ndarray:
    """Mirror-pad (..., 120, 120, C) to (..., 128, 128, C) (reflect, edge not repeated)."""
    x = np.asarray(channels)
    width = [(0, 0)] * (x.ndim - 3) + [(PAD, PAD), (PAD, PAD), (0, 0)]
    return np.pad(x, width, mode="reflect")


def crop(channels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pad`: (..., 128, 128, C) -> (..., 120, 120, C)."""
    return np.asarray(channels)[..., PAD : PAD + GRID_SIZE, PAD : PAD + GRID_SIZE, :]


def pad_tf(channels):
    """TensorFlow twin of :func:`pad` for a (batch, 120, 120, C) tensor."""
    import tensorflow as tf

    return tf.pad(channels, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")


def crop_tf(channels):
    """Twin of :func:`crop` for a (batch, 128, 128, C) tensor: plain slicing, so any Keras backend's."""
    return channels[:, PAD : PAD + GRID_SIZE, PAD : PAD + GRID_SIZE, :]


def to_model_inputs(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """Forecast inputs (n, 4, 120, 120) mm/h, NaN = no data -> network inputs (n, 128, 128, 4)."""
    return pad(stack_scans(rain_rate_to_log(rain_rate_mm_h)))


def from_model_outputs(outputs: np.ndarray) -> np.ndarray:
    """Network outputs (n, 128, 128, T) on the log scale -> rain rates (n, T, 120, 120) mm/h."""
    return log_to_rain_rate(unstack_scans(crop(outputs)))
