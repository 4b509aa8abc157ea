"""Forecast fields on disk: compressed ``.npz`` under ``$NOWCAST_HOME/forecasts``.

Rain rates are kept at 0.01 mm/h resolution (uint16 counts). :func:`quantize` is applied
before anything is computed from a forecast, so stored fields, dam results and
verification all see the same numbers.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from nowcast_core.io.files import sha256_bytes, write_verified

RESOLUTION_MM_H = 0.01
_MAX_COUNT = np.iinfo(np.uint16).max
#: Rates below this are stored as 0: pixel 0 ("no echo") converts to 0.0085 mm/h.
NO_ECHO_MM_H = 0.009


def quantize(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    """Round rain rates to the stored resolution (float32, >= 0, <= 655.35 mm/h)."""
    rain = np.asarray(rain_rate_mm_h, dtype=np.float64)
    counts = np.clip(np.rint(rain / RESOLUTION_MM_H), 0, _MAX_COUNT)
    counts = np.where(rain < NO_ECHO_MM_H, 0.0, counts)  # the feed's floor (pixel 0 = -10 dBZ = 0.0085 mm/h, no echo) is dry
    return (counts * RESOLUTION_MM_H).astype(np.float32)


def field_relpath(issue_time: datetime, method: str, checksum: str) -> Path:
    """Where a run's field lives, relative to the forecasts folder. The checksum in the name keeps
    files of different content apart: a run that loses a store race never overwrites the winner's."""
    return Path(f"{issue_time:%Y/%m/%d}") / f"{issue_time:%Y%m%d%H%M}_{method}_{checksum[:12]}.npz"


def save_field(root: Path, issue_time: datetime, method: str, rain_rate_mm_h: np.ndarray) -> tuple[str, str]:
    """Store a (6, H, W) forecast; returns (path relative to ``root``, sha256 of the file)."""
    counts = np.rint(quantize(rain_rate_mm_h) / RESOLUTION_MM_H).astype(np.uint16)
    buf = io.BytesIO()
    np.savez_compressed(buf, rain_rate_counts=counts, resolution_mm_h=np.float64(RESOLUTION_MM_H))
    data = buf.getvalue()
    checksum = sha256_bytes(data)
    rel = field_relpath(issue_time, method, checksum)
    write_verified(data, Path(root) / rel)
    return str(rel), checksum


def load_field(root: Path, relpath: str, checksum: str | None = None) -> np.ndarray:
    """Load a stored forecast as float32 mm/h; verify its checksum when given."""
    data = (Path(root) / relpath).read_bytes()
    if checksum is not None and sha256_bytes(data) != checksum:
        raise ValueError(f"forecast field {relpath} does not match its stored checksum")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return (npz["rain_rate_counts"].astype(np.float64) * float(npz["resolution_mm_h"])).astype(np.float32)


def warn_missing(log: logging.Logger, what: str, issue_times: Sequence[datetime]) -> None:
    """One warning for the runs whose stored file is gone though they were not pruned (deleted by hand,
    or the mark lost by a database downgrade): ``what`` is what is skipped for them."""
    if issue_times:
        shown = ", ".join(f"{t:%Y-%m-%dT%H:%MZ}" for t in issue_times[:5])
        more = f" and {len(issue_times) - 5} more" if len(issue_times) > 5 else ""
        runs = "1 run whose file is" if len(issue_times) == 1 else f"{len(issue_times)} runs whose files are"
        log.warning("%s skipped for %s missing from the forecasts folder though not pruned (deleted by hand?): %s%s",
                    what, runs, shown, more)


# --- exceedance probabilities of an ensemble run (beside the forecast fields) ----------------


def _member_counts(share: np.ndarray, n_members: int) -> np.ndarray:
    p = np.asarray(share, dtype=np.float64)
    if not 1 <= n_members <= 255:
        raise ValueError(f"n_members must be 1 .. 255 to store member counts, got {n_members}")
    counts = np.rint(p * n_members)
    if np.abs(counts - p * n_members).max(initial=0.0) > 1e-3 or counts.min(initial=0) < 0 or counts.max(initial=0) > n_members:
        raise ValueError("exceedance probabilities must be member fractions k / n_members")
    return counts.astype(np.uint8)


def save_probability(root: Path, issue_time: datetime, method: str, exceedance_probability: np.ndarray,
                     thresholds_mm_h, n_members: int, probability_map=None,
                     steps_share: np.ndarray | None = None) -> tuple[str, str]:
    """Store (6, n_thresholds, H, W) exceedance shares of an ``n_members`` ensemble, exactly, as member
    counts (uint8), with the ensemble's ``probability_map`` (:class:`~nowcast_core.ensembles.recalibration.
    ProbabilityMap`) per lead and threshold, its neighbourhood and, where it pools a STEPS ensemble, that
    ensemble's shares ``steps_share`` and weight, so :func:`load_probability` returns the published
    probabilities; returns (path relative to ``root``, sha256 of the file)."""
    counts = _member_counts(exceedance_probability, n_members)
    mapping = {}
    if probability_map is not None:  # per lead and threshold the published value at each raw level
        levels, table = probability_map.table(list(thresholds_mm_h))
        mapping = {"map_raw_levels": levels, "map_probability": table,
                   "map_neighbourhood_px": np.float64(probability_map.neighbourhood_px)}
        if probability_map.pools:
            if steps_share is None or np.shape(steps_share) != counts.shape:
                raise ValueError("this map pools a STEPS ensemble: give its shares, shaped as the members'")
            mapping.update(map_steps_weight=probability_map.steps_weights(list(thresholds_mm_h)),
                           steps_member_counts=_member_counts(steps_share, probability_map.steps_members),
                           steps_n_members=np.int64(probability_map.steps_members))
    buf = io.BytesIO()
    np.savez_compressed(buf, member_counts=counts, n_members=np.int64(n_members),
                        thresholds_mm_h=np.asarray(thresholds_mm_h, dtype=np.float64), **mapping)
    data = buf.getvalue()
    checksum = sha256_bytes(data)
    rel = Path(f"{issue_time:%Y/%m/%d}") / f"{issue_time:%Y%m%d%H%M}_{method}_prob_{checksum[:12]}.npz"
    write_verified(data, Path(root) / rel)
    return str(rel), checksum


def neighbourhood(share: np.ndarray, neighbourhood_px: float) -> np.ndarray:
    """Exceedance shares (..., H, W) averaged over a Gaussian neighbourhood of ``neighbourhood_px`` pixels
    (edges held); 0 leaves them. A pixel's probability then counts the members that rain near it, not
    only on it: heavy rain is placed less exactly than a member's pixel says."""
    p = np.asarray(share, dtype=np.float64)
    if neighbourhood_px <= 0:
        return p
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(p, sigma=(0,) * (p.ndim - 2) + (neighbourhood_px, neighbourhood_px), mode="nearest")


def publish(share: np.ndarray, thresholds_mm_h: Sequence[float], levels: np.ndarray, table: np.ndarray,
            neighbourhood_px: float = 0.0, steps_share: np.ndarray | None = None,
            steps_weight: Sequence[float] | None = None) -> np.ndarray:
    """Exceedance shares (6, n_thresholds, H, W) -> float32 published probabilities: averaged over the
    map's :func:`neighbourhood`, each lead and threshold through its map ``table`` (6, n_thresholds, L)
    over ``levels``, pooled with a STEPS ensemble's shares ``steps_share`` at ``steps_weight`` (one per threshold),
    then never rising with the threshold (a pixel's probability of 5 mm/h is at most its probability of
    1 mm/h)."""
    p = neighbourhood(share, neighbourhood_px).copy()
    for k in range(p.shape[0]):
        for j in range(p.shape[1]):
            p[k, j] = np.interp(p[k, j], levels, table[k, j])
    w = np.zeros(p.shape[1]) if steps_weight is None else np.asarray(steps_weight, dtype=np.float64)
    if w.any():
        if steps_share is None:
            raise ValueError("a pooled map needs the STEPS ensemble's shares")
        w = w[None, :, None, None]
        p = (1.0 - w) * p + w * np.asarray(steps_share, dtype=np.float64)
    order = np.argsort(np.asarray(thresholds_mm_h, dtype=np.float64), kind="stable")
    p[:, order] = np.minimum.accumulate(p[:, order], axis=1)
    return p.astype(np.float32)


def load_probability(root: Path, relpath: str, checksum: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored exceedance probabilities, recalibrated where the file has a map: (float32 (6, n_thresholds,
    H, W), thresholds in mm/h)."""
    data = (Path(root) / relpath).read_bytes()
    if checksum is not None and sha256_bytes(data) != checksum:
        raise ValueError(f"probability field {relpath} does not match its stored checksum")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        p = npz["member_counts"].astype(np.float64) / int(npz["n_members"])
        thresholds = npz["thresholds_mm_h"].astype(np.float64)
        if "map_probability" in npz.files:
            px = float(npz["map_neighbourhood_px"]) if "map_neighbourhood_px" in npz.files else 0.0
            pooled = {}
            if "map_steps_weight" in npz.files:
                pooled = {"steps_weight": npz["map_steps_weight"].astype(np.float64),
                          "steps_share": npz["steps_member_counts"].astype(np.float64) / int(npz["steps_n_members"])}
            return publish(p, thresholds, npz["map_raw_levels"], npz["map_probability"], px, **pooled), thresholds
        return p.astype(np.float32), thresholds
