"""A synthetic, realistic-looking radar sequence, for demonstrations without a radar feed.

The rain field of each scan is the sum of

- a light stratiform background: a smooth random field with a power-law spectrum, advected
  with the common velocity and slowly evolving (rotating between two independent fields),
  mapped to 0.1 .. ~10 mm/h where it exceeds a threshold, fading below it;
- convective cells: elliptical Gaussians in rain rate (peaks ~5 .. 50 mm/h) that move with the
  common velocity plus a small drift of their own and grow and decay over a lifetime of
  one to four hours (a ``sin^2`` envelope), textured by the background field; new cells are
  born at random places, including upwind of the grid, so rain keeps entering from the
  upwind edge.

The motion is coherent (one steering velocity of a few pixels per 10 minutes), so optical
flow has skill over persistence. Rates are converted to the feed's uint8 pixel scale with
:func:`nowcast_core.io.rain_rate_to_pixel`; rain-free pixels are 0.

Everything is drawn from ``numpy.random.default_rng(seed)`` in a fixed order, so a seed gives
the same sequence every time, and a shorter sequence is a prefix of a longer one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy import ndimage

from nowcast_core.contract import GRID_SHAPE, SCAN_INTERVAL
from nowcast_core.io.files import write_verified
from nowcast_core.io.frames import frame_file_name
from nowcast_core.io.scale import rain_rate_to_pixel

#: Default first scan time: a monsoon-season morning (UTC).
DEFAULT_START = datetime(2020, 8, 2, 0, 0, tzinfo=UTC)

_BACKGROUND_SIZE = 256  # side of the periodic background field, pixels
_BACKGROUND_EXPONENT = 3.5  # power spectrum ~ k^-exponent
_BACKGROUND_TURN = 0.05  # radians per scan of the background's Lagrangian evolution
_BAND_STRETCH = 0.6  # background features are 1 / this longer along the motion than across
_CELL_MARGIN = 40  # cells are born up to this far outside the grid
_CELL_TEXTURE = 0.4  # cells' rates are modulated by exp(this * background field)


@dataclass
class _Cell:
    born: int  # scan index of birth (negative for cells alive at the start)
    row: float  # centre at birth
    col: float
    drift_row: float  # own motion on top of the common velocity, pixels per scan
    drift_col: float
    lifetime: int  # scans
    peak_mm_h: float
    sigma_major: float  # pixels
    sigma_minor: float
    angle: float  # orientation of the major axis, radians

    def rate(self, t: int, rows: np.ndarray, cols: np.ndarray, v_row: float, v_col: float) -> np.ndarray | None:
        age = t - self.born
        if not 0 < age < self.lifetime:
            return None
        envelope = np.sin(np.pi * age / self.lifetime) ** 2
        scale = 0.6 + 0.4 * envelope  # cells widen as they grow
        r0 = self.row + (v_row + self.drift_row) * age
        c0 = self.col + (v_col + self.drift_col) * age
        dr, dc = rows - r0, cols - c0
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        u = (ca * dr + sa * dc) / (self.sigma_major * scale)
        w = (-sa * dr + ca * dc) / (self.sigma_minor * scale)
        return self.peak_mm_h * envelope * np.exp(-0.5 * (u * u + w * w))


def _smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """A periodic, standardised Gaussian random field with a power-law spectrum."""
    k = np.fft.fftfreq(size)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    kk[0, 0] = 1.0
    amplitude = np.maximum(kk, 2.0 / size) ** (-_BACKGROUND_EXPONENT / 2)
    amplitude[0, 0] = 0.0
    noise = np.fft.fft2(rng.standard_normal((size, size)))
    field = np.real(np.fft.ifft2(noise * amplitude))
    return (field - field.mean()) / field.std()


def _new_cell(rng: np.random.Generator, born: int, shape: tuple[int, int]) -> _Cell:
    m = _CELL_MARGIN
    major = rng.uniform(3.0, 7.0)
    return _Cell(
        born=born,
        row=rng.uniform(-m, shape[0] + m),
        col=rng.uniform(-m, shape[1] + m),
        drift_row=rng.normal(0.0, 0.3),
        drift_col=rng.normal(0.0, 0.3),
        lifetime=int(rng.integers(6, 25)),
        peak_mm_h=float(np.clip(rng.lognormal(np.log(15.0), 0.6), 4.0, 45.0)),
        sigma_major=major,
        sigma_minor=major * rng.uniform(0.45, 0.9),
        angle=rng.uniform(0.0, np.pi),
    )


def generate_rain_rates(
    n_scans: int = 36,
    seed: int = 0,
    shape: tuple[int, int] = GRID_SHAPE,
) -> np.ndarray:
    """Rain rates (mm/h) of a synthetic sequence, before quantisation to pixels.

    Parameters
    ----------
    n_scans : number of 10-minute scans.
    seed : seed of the random generator; the same seed gives the same sequence.
    shape : (rows, cols) of the grid.

    Returns
    -------
    float32 array (n_scans, rows, cols), >= 0.
    """
    if n_scans < 0:
        raise ValueError(f"n_scans must be >= 0, got {n_scans}")
    rng = np.random.default_rng(seed)
    # Steering flow: from the west-southwest, 3-5 pixels (km) per 10 minutes (18-30 km/h).
    speed = rng.uniform(3.0, 5.0)
    heading = np.deg2rad(rng.uniform(10.0, 40.0))  # direction of motion, counterclockwise from east
    v_row, v_col = -speed * np.sin(heading), speed * np.cos(heading)  # row 0 is north

    f1 = _smooth_field(rng, _BACKGROUND_SIZE)
    f2 = _smooth_field(rng, _BACKGROUND_SIZE)
    threshold = rng.uniform(0.7, 1.1)
    origin = rng.uniform(0, _BACKGROUND_SIZE, size=2)

    cells = []
    for _ in range(int(rng.integers(8, 13))):  # cells alive at the start, at random ages
        cell = _new_cell(rng, 0, shape)
        cell.born = -int(rng.integers(0, cell.lifetime))
        cells.append(cell)

    rows, cols = np.indices(shape, dtype=np.float64)
    out = np.empty((n_scans,) + tuple(shape), dtype=np.float32)
    for t in range(n_scans):
        for _ in range(int(rng.poisson(0.8))):
            cells.append(_new_cell(rng, t, shape))
        cells = [c for c in cells if t - c.born < c.lifetime]

        # Lagrangian coordinates (the background moves with the flow exactly), stretched
        # along the motion so that rain areas form bands.
        lag_row, lag_col = rows - v_row * t, cols - v_col * t
        along = (lag_col * np.cos(heading) - lag_row * np.sin(heading)) * _BAND_STRETCH
        across = lag_col * np.sin(heading) + lag_row * np.cos(heading)
        coords = np.stack([origin[0] + across, origin[1] + along])
        phase = _BACKGROUND_TURN * t
        field = np.cos(phase) * ndimage.map_coordinates(f1, coords, order=1, mode="grid-wrap")
        field += np.sin(phase) * ndimage.map_coordinates(f2, coords, order=1, mode="grid-wrap")
        excess = field - threshold
        rate = np.where(excess > -1.0, 0.1 * np.exp(1.8 * excess), 0.0)

        texture = np.minimum(np.exp(_CELL_TEXTURE * field), 1.3)  # cells carry the background's texture
        for cell in cells:
            r = cell.rate(t, rows, cols, v_row, v_col)
            if r is not None:
                rate += r * texture
        rate[rate < 0.02] = 0.0
        out[t] = rate
    return out


def _check_start(start: datetime) -> datetime:
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start = start.astimezone(UTC)
    if start.minute % 10 or start.second or start.microsecond:
        raise ValueError(f"start {start.isoformat()} is not on a 10-minute scan time")
    return start


def generate_sequence(
    n_scans: int = 36,
    start: datetime = DEFAULT_START,
    seed: int = 0,
    shape: tuple[int, int] = GRID_SHAPE,
) -> list[tuple[datetime, np.ndarray]]:
    """A synthetic radar sequence on the feed's pixel scale.

    Parameters
    ----------
    n_scans : number of scans, 10 minutes apart.
    start : time of the first scan; a naive datetime is taken as UTC. Minutes must be a
        multiple of 10.
    seed : seed of the random generator. The content depends only on ``seed`` and ``shape``
        (not on ``start``); a shorter sequence is a prefix of a longer one.
    shape : (rows, cols) of the grid; the feed's contract is 120 x 120.

    Returns
    -------
    list of (scan_time, frame): aware UTC datetimes and uint8 arrays of ``shape``.
    """
    start = _check_start(start)
    rates = generate_rain_rates(n_scans, seed, shape)
    return [(start + k * SCAN_INTERVAL, rain_rate_to_pixel(rates[k])) for k in range(n_scans)]


def write_sequence(
    folder: str | Path,
    n_scans: int = 36,
    start: datetime = DEFAULT_START,
    seed: int = 0,
    shape: tuple[int, int] = GRID_SHAPE,
) -> list[Path]:
    """Write a synthetic sequence as contract files ``RDR_YYYYMMDDHHMM.npz`` into ``folder``.

    Each file is written under a temporary name and renamed, as a producer should, so a
    poller never sees a partial file. Existing files of the same names are replaced.

    Parameters
    ----------
    folder : destination (created if missing).
    n_scans, start, seed, shape : as :func:`generate_sequence`.

    Returns
    -------
    list of Path, the files written, oldest first.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for scan_time, frame in generate_sequence(n_scans, start, seed, shape):
        path = folder / frame_file_name(scan_time)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frame=frame)
        write_verified(buffer.getvalue(), path)
        paths.append(path)
    return paths


__all__ = ["DEFAULT_START", "generate_rain_rates", "generate_sequence", "write_sequence"]
