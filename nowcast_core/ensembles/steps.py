"""pysteps STEPS ensemble: ``n_members`` stochastic S-PROG forecasts with cascade noise and
perturbed motion (the reference of the production ensemble), members in mm/h."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from nowcast_core.contract import N_LEADS, SCAN_INTERVAL
from nowcast_core.ensembles import register
from nowcast_core.ensembles.base import check_inputs, check_members, empty, issue_generator
from nowcast_core.forecasters import cascade

KM_PER_PIXEL = 1.0


class StepsEnsemble:
    name = "steps"
    probability_map = None  # the reference: its members' shares as pysteps makes them

    def __init__(self, n_members: int = 12, seed: int = 42, n_cascade_levels: int = 6):
        self.n_members, self.seed, self.n_cascade_levels = check_members(n_members), int(seed), n_cascade_levels
        self.version = (f"pysteps-{importlib.metadata.version('pysteps')}-steps-{self.n_members}members"
                        f"-seed{self.seed}-{n_cascade_levels}levels")

    def _one(self, sequence_mm_h: np.ndarray, seed: int) -> np.ndarray:
        from pysteps import nowcasts

        prepared = cascade.prepare(sequence_mm_h)
        if prepared is None:
            return empty(1, self.n_members, sequence_mm_h.shape[1:])[0]
        dbr, velocity = prepared
        for ar_order in (2, 1):  # AR(2) as pysteps; AR(1) where the AR(2) estimate is not stationary
            try:
                with cascade.quiet():
                    members = nowcasts.get_method("steps")(
                        dbr[-(ar_order + 1):], velocity, N_LEADS, n_ens_members=self.n_members,
                        n_cascade_levels=self.n_cascade_levels, precip_thr=cascade.RAIN_THRESHOLD_DBR,
                        kmperpixel=KM_PER_PIXEL, timestep=SCAN_INTERVAL.total_seconds() / 60, seed=seed,
                        ar_order=ar_order)
                break
            except RuntimeError as exc:
                if ar_order == 1 or "nonstationary" not in str(exc):
                    raise
        return cascade.to_mm_h(members).astype(np.float32)

    def steps_ensemble(self) -> None:
        return None  # pools nothing

    def members(self, rain_rate_mm_h: np.ndarray, *, issue_times: Sequence[datetime] | None = None,
                centre_mm_h: np.ndarray | None = None) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        out = empty(len(x), self.n_members, x.shape[2:])
        for k, seq in enumerate(x):
            rng = issue_generator(self.seed, issue_times[k] if issue_times is not None else None, k)
            out[k] = self._one(seq, int(rng.integers(2**31 - 1)))
        return out


@register("steps")
def make_steps(n_members: int = 12, seed: int = 42, n_cascade_levels: int = 6) -> StepsEnsemble:
    return StepsEnsemble(n_members, seed, n_cascade_levels)
