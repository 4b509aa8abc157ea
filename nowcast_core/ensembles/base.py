"""The ensemble interface and per-issue-time random generators."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from nowcast_core.contract import N_INPUTS, N_LEADS


class Ensemble(Protocol):
    name: str
    version: str
    n_members: int
    seed: int
    #: Recalibrates the members' exceedance shares (:mod:`nowcast_core.ensembles.recalibration`); None: raw.
    probability_map: object | None

    def members(self, rain_rate_mm_h: np.ndarray, *, issue_times: Sequence[datetime] | None = None,
                centre_mm_h: np.ndarray | None = None) -> np.ndarray:
        """(n, 4, H, W) mm/h inputs -> float32 (n, n_members, 6, H, W) mm/h >= 0.

        ``issue_times`` seed each issue time's generator (default: its index in the batch);
        ``centre_mm_h`` (n, 6, H, W), where a method is centred on a deterministic forecast,
        is that forecast already made (e.g. the stored production run)."""
        ...

    def steps_ensemble(self) -> "Ensemble | None":
        """The STEPS ensemble its ``probability_map`` pools with (same seed); None when it pools none."""
        ...


def check_inputs(rain_rate_mm_h: np.ndarray) -> np.ndarray:
    x = np.asarray(rain_rate_mm_h, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != N_INPUTS:
        raise ValueError(f"ensemble inputs must be (n, {N_INPUTS}, H, W), got {x.shape}")
    return x


def check_members(n_members: int) -> int:
    if int(n_members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {n_members}")
    return int(n_members)


def issue_generator(seed: int, issue_time: datetime | None, index: int = 0) -> np.random.Generator:
    """The random generator of one issue time: seeded by (``seed``, minutes since 1970 of the
    issue time), or (``seed``, ``index``) without one, so a forecast does not depend on its batch."""
    key = int(issue_time.astimezone(UTC).timestamp() // 60) if issue_time is not None else index
    return np.random.default_rng([int(seed), key])


def empty(n: int, n_members: int, shape: tuple[int, int]) -> np.ndarray:
    return np.zeros((n, n_members, N_LEADS) + tuple(shape), np.float32)
