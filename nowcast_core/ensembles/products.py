"""Probabilistic products of one run: what the members say about each dam and each pixel.

Pure functions of the deterministic forecast (the centre) and the members (mm/h):

- :func:`exceedance_probability`: per lead the share of members at or above each rain-rate
  threshold, pixel by pixel, recalibrated where the ensemble has a probability map (the fields
  stored beside the forecast);
- :func:`dam_probabilities`: per dam and lead, the catchment-mean rain accumulated from the
  issue time (``accum_mm`` of the centre; ``accum_mm_p10/p50/p90`` over the members; each
  member's value), ``prob_accum_ge`` at the dam's accumulation thresholds and ``prob_rate_ge``
  of the catchment-mean rate at that lead.

Where the ensemble's probability map pools a STEPS ensemble, both products pool: the pixel
probabilities as the map publishes them (its weight per threshold), and the dam products over the two
member sets weighted (1 - w) and w, w the map's weight at :data:`DAM_POOL_THRESHOLD_MM_H` (heavy rain,
what the dam products are for; probabilities as weighted shares, quantiles of the weighted mixture).

Each 10-minute lead's rate holds for 10 minutes (:func:`nowcast_core.dams.accumulated_depth_mm`, the
same depth as ``dam_rainfall``'s ``depth_mm``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nowcast_core.contract import LEAD_MINUTES, N_LEADS, THRESHOLDS_MM_H
from nowcast_core.dams import Dam, accumulated_depth_mm, catchment_mean_rates
from nowcast_core.ensembles.recalibration import ProbabilityMap, member_shares
from nowcast_core.io.fields import publish

#: Catchment-mean rain-rate thresholds (mm/h) of ``prob_rate_ge``.
RATE_THRESHOLDS_MM_H = (1.0, 5.0, 10.0)
#: The pixel threshold whose STEPS weight the dam products pool with.
DAM_POOL_THRESHOLD_MM_H = 5.0
#: Quantiles stored over the members.
QUANTILES = {"accum_mm_p10": 0.1, "accum_mm_p50": 0.5, "accum_mm_p90": 0.9}


def threshold_key(value: float) -> str:
    """How a threshold is written as a key: ``5``, ``0.1``."""
    return f"{float(value):g}"


def _check_members(members_mm_h: np.ndarray) -> np.ndarray:
    m = np.asarray(members_mm_h, dtype=np.float32)
    if m.ndim != 4 or m.shape[1] != N_LEADS or len(m) < 1:
        raise ValueError(f"members must be (n_members, {N_LEADS}, H, W), got {m.shape}")
    return m


def dam_pool_weight(probability_map: ProbabilityMap | None) -> float:
    """The STEPS weight the dam products pool with: the map's at :data:`DAM_POOL_THRESHOLD_MM_H`; 0 without."""
    if probability_map is None or not probability_map.pools:
        return 0.0
    return float(probability_map.steps_weights([DAM_POOL_THRESHOLD_MM_H])[0])


def pool_members(members: np.ndarray, steps_members: np.ndarray | None = None,
                 steps_weight: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, weights) of members pooled with STEPS members along axis 0: the members first, the
    two sets weighted 1 - ``steps_weight`` and ``steps_weight``, shared equally within each set.
    Unpooled (no STEPS members or no weight): the members as they are and weights None (equal)."""
    if steps_members is None or not len(steps_members) or not steps_weight:
        return members, None
    weights = np.concatenate([np.full(len(members), (1.0 - steps_weight) / len(members)),
                              np.full(len(steps_members), steps_weight / len(steps_members))])
    return np.concatenate([members, steps_members]), weights


def member_share(reached: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The share of members that reach something (bool per member): plain for equal members, the
    weighted share for pooled ones (``weights`` from :func:`pool_members`)."""
    if weights is None:
        return float(np.mean(reached))
    return float(np.clip(weights @ reached, 0.0, 1.0))


def member_quantile(values: np.ndarray, q: float, weights: np.ndarray | None = None, axis: int = 0) -> np.ndarray:
    """The ``q`` quantile of members' ``values`` along ``axis``: plain (interpolated) for equal members,
    of the weighted mixture (inverted CDF) for pooled ones (``weights`` from :func:`pool_members`)."""
    if weights is None:
        return np.quantile(values, q, axis=axis)
    return np.quantile(values, q, axis=axis, weights=weights, method="inverted_cdf")


def exceedance_probability(members_mm_h: np.ndarray, thresholds_mm_h: Sequence[float] = THRESHOLDS_MM_H,
                           probability_map: ProbabilityMap | None = None,
                           steps_members_mm_h: np.ndarray | None = None) -> np.ndarray:
    """float32 (6, n_thresholds, H, W): share of members >= each threshold, recalibrated by the
    ensemble's ``probability_map`` where it has one (``ensemble.probability_map``: over its
    neighbourhood, then mapped, then pooled with ``steps_members_mm_h`` where the map pools them)."""
    share = member_shares(_check_members(members_mm_h), thresholds_mm_h).astype(np.float32)
    if probability_map is None:
        return share
    steps_share = None
    if probability_map.pools:
        if steps_members_mm_h is None:
            raise ValueError("this probability map pools a STEPS ensemble: give its members")
        steps_share = member_shares(_check_members(steps_members_mm_h), thresholds_mm_h)
    return publish(share, thresholds_mm_h, *probability_map.table(thresholds_mm_h), probability_map.neighbourhood_px,
                   steps_share, probability_map.steps_weights(thresholds_mm_h))


def dam_probabilities(centre_mm_h: np.ndarray, members_mm_h: np.ndarray, dams: Sequence[Dam],
                      rate_thresholds_mm_h: Sequence[float] = RATE_THRESHOLDS_MM_H,
                      steps_members_mm_h: np.ndarray | None = None, steps_weight: float = 0.0,
                      range_levels: Sequence[Sequence[float]] = ()) -> list[dict]:
    """One row per dam and lead (dam by dam, lead by lead) with ``dam_id``, ``lead_minutes``,
    ``accum_mm``, ``accum_mm_p10``, ``accum_mm_p50``, ``accum_mm_p90``, ``accum_mm_members``,
    ``prob_accum_ge`` {mm: p} and ``prob_rate_ge`` {mm/h: p}. With ``steps_weight`` > 0 the members
    are pooled with ``steps_members_mm_h`` at that weight (:func:`pool_members`): ``accum_mm_members``
    stays the members', ``steps_accum_mm_members`` and ``steps_weight`` hold what they were pooled with
    (None unpooled), so the alert weighs the members as these products do. ``range_levels``: per lead,
    the member quantile levels (low, high) published as ``accum_mm_p10`` and ``_p90``
    (``ensemble.dam_range_levels``, calibrated on held-out events); empty: 0.1 and 0.9."""
    centre = np.asarray(centre_mm_h, dtype=np.float32)
    members = _check_members(members_mm_h)
    if centre.shape != members.shape[1:]:
        raise ValueError(f"centre {centre.shape} and members {members.shape[1:]} differ")
    centre_accum = accumulated_depth_mm(catchment_mean_rates(centre, dams))  # (6, n_dams): dam_rainfall's depth_mm
    own_rates = catchment_mean_rates(members, dams)  # (m, 6, n_dams)
    own_accum = accumulated_depth_mm(own_rates)
    steps_rates = steps_accum = None
    if steps_weight > 0:
        if steps_members_mm_h is None:
            raise ValueError("pooling with a STEPS ensemble needs its members")
        steps_rates = catchment_mean_rates(_check_members(steps_members_mm_h), dams)
        steps_accum = accumulated_depth_mm(steps_rates)
    member_rates, weights = pool_members(own_rates, steps_rates, steps_weight)
    member_accum, _ = pool_members(own_accum, steps_accum, steps_weight)
    levels = np.asarray(range_levels, float) if len(range_levels) else None  # (6, 2): the calibrated range
    quantiles = {}
    for key, q in QUANTILES.items():
        if levels is None or key == "accum_mm_p50":
            quantiles[key] = member_quantile(member_accum, q, weights)
        else:  # each lead at its own level; a depth since the issue time never falls with the lead
            side = 0 if key == "accum_mm_p10" else 1
            per_lead = [member_quantile(member_accum[:, k], levels[k, side], weights) for k in range(len(levels))]
            quantiles[key] = np.maximum.accumulate(np.stack(per_lead), axis=0)

    rows = []
    for d, dam in enumerate(dams):
        for k, lead in enumerate(LEAD_MINUTES):
            accum = member_accum[:, k, d]
            rate = member_rates[:, k, d]
            rows.append({
                "dam_id": dam.id,
                "lead_minutes": lead,
                "accum_mm": float(centre_accum[k, d]),
                **{name: float(q[k, d]) for name, q in quantiles.items()},
                "accum_mm_members": [round(float(v), 4) for v in own_accum[:, k, d]],
                "steps_accum_mm_members": None if steps_accum is None else [
                    round(float(v), 4) for v in steps_accum[:, k, d]],
                "steps_weight": float(steps_weight) if steps_accum is not None else None,
                "prob_accum_ge": {threshold_key(t): member_share(accum >= t, weights) for t in dam.accum_thresholds_mm},
                "prob_rate_ge": {threshold_key(t): member_share(rate >= t, weights) for t in rate_thresholds_mm_h},
            })
    return rows
