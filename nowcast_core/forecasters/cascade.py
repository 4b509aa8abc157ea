"""What the pysteps cascade nowcasts (S-PROG, STEPS) share: the dBR transform of rain rates,
the Lucas-Kanade motion of :mod:`nowcast_core.extrapolation`, and the way back to mm/h.

Rain rates below 0.1 mm/h (and NaN, no data) are dry: -15 dBR; the cascade's rain threshold
is 0.1 mm/h = -10 dBR. pysteps prints its progress to stdout; :func:`quiet` keeps it from the
command line's output.

With only a few rainy pixels in the inputs (scattered showers at the edge of the grid) a cascade
level can be constant in time and pysteps cannot estimate its autocorrelation ("x contains
non-finite values"); :func:`run` then gives the plain Lucas-Kanade extrapolation of the newest scan
(what S-PROG is without its scale-dependent damping) and logs it at debug level.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable

import numpy as np

from nowcast_core import extrapolation

log = logging.getLogger(__name__)

#: Rain threshold of the dBR transform and of the cascade nowcasts.
RAIN_THRESHOLD_MM_H = 0.1
RAIN_THRESHOLD_DBR = 10.0 * np.log10(RAIN_THRESHOLD_MM_H)
#: dBR of dry pixels.
DRY_DBR = -15.0


def prepare(sequence_mm_h: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """One input sequence (4, H, W) mm/h -> (dBR sequence, motion (2, H, W)); None when the newest
    scan has no rain at or above the threshold (the forecast is then dry)."""
    from pysteps.utils import transformation

    seq = np.maximum(np.nan_to_num(np.asarray(sequence_mm_h, dtype=np.float64), nan=0.0), 0.0)
    if not np.any(seq[-1] >= RAIN_THRESHOLD_MM_H):
        return None
    dbr, _ = transformation.dB_transform(seq, threshold=RAIN_THRESHOLD_MM_H, zerovalue=DRY_DBR)
    return dbr, extrapolation.motion_field(seq)


def to_mm_h(dbr: np.ndarray) -> np.ndarray:
    """dBR forecast -> finite mm/h >= 0 (below the threshold and NaN, i.e. no upstream source: 0)."""
    from pysteps.utils import transformation

    rate, _ = transformation.dB_transform(np.asarray(dbr, dtype=np.float64), threshold=RAIN_THRESHOLD_DBR,
                                          zerovalue=0.0, inverse=True)
    return np.clip(np.nan_to_num(rate, nan=0.0, posinf=0.0), 0.0, None)


def run(sequence_mm_h: np.ndarray, n_leads: int, nowcast: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """``nowcast(dbr_sequence, motion)`` -> mm/h (n_leads, H, W) of one input sequence (4, H, W): dry
    when the newest scan is, the plain extrapolation where the cascade cannot be estimated."""
    prepared = prepare(sequence_mm_h)
    if prepared is None:
        return np.zeros((n_leads,) + np.shape(sequence_mm_h)[1:], np.float32)
    try:
        with quiet():
            return nowcast(*prepared).astype(np.float32)
    except ValueError as exc:
        log.debug("cascade nowcast not possible (%s): plain extrapolation instead", exc)
        return extrapolation.extrapolate(sequence_mm_h, n_leads)


@contextlib.contextmanager
def quiet():
    """Silence pysteps' progress printing."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
