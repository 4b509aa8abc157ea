"""Calibrating the production ensemble's perturbations on training events.

Per lead, a grid search over the displacement spread, the log-noise amplitude and the gain for the
smallest sum of Brier scores at the calibration thresholds (default 1 and 5 mm/h), pixel by
pixel over every issue time given. Every (lead, candidate) is scored with the same random draws
(common random numbers), so candidates differ only by their parameters. Then, with the chosen
perturbations, the members' exceedance shares at the product thresholds are recalibrated to the
frequencies observed on the same events (:mod:`nowcast_core.ensembles.recalibration`), over the
neighbourhood of the grid whose map scores the lowest Brier score there at the calibration thresholds.
Given a STEPS ensemble's shares on the same starts and the event of each start, the map also pools
them, per threshold at the weight that scores best with each event held out in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from nowcast_core.contract import N_LEADS, THRESHOLDS_MM_H
from nowcast_core.ensembles.base import issue_generator
from nowcast_core.ensembles.perturbed import (
    Perturbations,
    displaced,
    draw,
    log_normal_factor,
    matched,
    perturb,
)
from nowcast_core.ensembles.recalibration import (
    PRIOR_PIXELS,
    LevelCounts,
    member_shares,
)
from nowcast_core.io.fields import publish

DISPLACEMENT_GRID_PX = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 11.0, 15.0, 20.0)
LOG_SIGMA_GRID = (0.0, 0.2, 0.4, 0.7, 1.0, 1.3, 1.7, 2.2)
GAIN_GRID = (0.6, 0.75, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75)
#: Gaussian neighbourhoods (pixels) the recalibration tries.
NEIGHBOURHOOD_GRID_PX = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
CALIBRATION_THRESHOLDS_MM_H = (1.0, 5.0)
#: Weights of the pooled STEPS ensemble's shares the recalibration tries (0: the map alone).
STEPS_WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def calibrate(centres_mm_h: np.ndarray, observed_mm_h: np.ndarray, *, n_members: int = 24, seed: int = 0,
              corr_px: float = 6.0, displacement_grid_px: Sequence[float] = DISPLACEMENT_GRID_PX,
              log_sigma_grid: Sequence[float] = LOG_SIGMA_GRID, gain_grid: Sequence[float] = GAIN_GRID,
              thresholds_mm_h: Sequence[float] = CALIBRATION_THRESHOLDS_MM_H,
              newest_scans_mm_h: np.ndarray | None = None,
              recalibration_thresholds_mm_h: Sequence[float] | None = THRESHOLDS_MM_H,
              provenance: dict | None = None) -> tuple[Perturbations, dict]:
    """Perturbations minimising the Brier score of ``centres`` (n, 6, H, W) against ``observed`` (n, 6, H, W).

    With ``newest_scans_mm_h`` (n, H, W), the newest input scan of each start, the centres are first
    probability-matched to it (``match_cdf``) and the spreads calibrated around the matched centres.
    With ``recalibration_thresholds_mm_h`` (default the product thresholds; None: none), the chosen
    perturbations' exceedance shares get a probability map fitted on the same starts.

    Returns the perturbations and a table {lead index: {(d, s, g): summed Brier}} for reports.
    NaN observations (no data) are left out.
    """
    centres = np.asarray(centres_mm_h, dtype=np.float32)
    observed = np.asarray(observed_mm_h, dtype=np.float32)
    if centres.shape != observed.shape or centres.ndim != 4 or centres.shape[1] != N_LEADS:
        raise ValueError(f"centres and observations must both be (n, {N_LEADS}, H, W), got {centres.shape} "
                         f"and {observed.shape}")
    if not len(centres):
        raise ValueError("no issue times to calibrate on")
    thresholds = tuple(float(t) for t in thresholds_mm_h)
    # Squared-error sums and pixel counts per (lead, d, s, threshold).
    sq = np.zeros((N_LEADS, len(displacement_grid_px), len(log_sigma_grid), len(gain_grid), len(thresholds)))
    n_pixels = np.zeros(N_LEADS)
    match_cdf = newest_scans_mm_h is not None
    if match_cdf and len(newest_scans_mm_h) != len(centres):
        raise ValueError(f"{len(newest_scans_mm_h)} newest scans for {len(centres)} centres")
    for i in range(len(centres)):
        centre = matched(centres[i], newest_scans_mm_h[i]) if match_cdf else centres[i]
        directions, noise = draw(issue_generator(seed, None, i), n_members, centres.shape[2:], corr_px)
        factors = [log_normal_factor(noise, s) for s in log_sigma_grid]
        for k in range(N_LEADS):
            obs = observed[i, k]
            valid = np.isfinite(obs)
            n_pixels[k] += valid.sum()
            events = [(obs[valid] >= t).astype(np.float64) for t in thresholds]
            for a, d in enumerate(displacement_grid_px):
                moved = displaced(centre[k], directions, d)
                for b, factor in enumerate(factors):
                    members = (moved * factor)[:, valid]
                    for g, gain in enumerate(gain_grid):
                        for c, t in enumerate(thresholds):
                            prob = (members >= t / gain).mean(axis=0)  # gain * member >= t
                            sq[k, a, b, g, c] += float(((prob - events[c]) ** 2).sum())
    brier = sq / np.maximum(n_pixels, 1)[:, None, None, None, None]
    total = brier.sum(axis=-1)
    best_d, best_s, best_g, table = [], [], [], {}
    for k in range(N_LEADS):
        a, b, g = np.unravel_index(int(np.argmin(total[k])), total[k].shape)
        best_d.append(float(displacement_grid_px[a]))
        best_s.append(float(log_sigma_grid[b]))
        best_g.append(float(gain_grid[g]))
        table[k] = {(float(d), float(s), float(gg)): float(total[k, ai, bi, gi])
                    for ai, d in enumerate(displacement_grid_px) for bi, s in enumerate(log_sigma_grid)
                    for gi, gg in enumerate(gain_grid)}
    info = dict(provenance or {})
    info.update({"objective": f"sum of pixel Brier scores at {list(thresholds)} mm/h, per lead",
                 "n_issue_times": int(len(centres)), "n_members": int(n_members), "seed": int(seed),
                 "displacement_grid_px": list(map(float, displacement_grid_px)),
                 "log_sigma_grid": list(map(float, log_sigma_grid)), "gain_grid": list(map(float, gain_grid)),
                 "brier_at_optimum": [round(float(total[k].min()), 6) for k in range(N_LEADS)]})
    info["match_cdf"] = match_cdf
    chosen = Perturbations(tuple(best_d), tuple(best_s), float(corr_px), tuple(best_g), match_cdf, info)
    if recalibration_thresholds_mm_h is None:
        return chosen, table
    return recalibrate(chosen, centres, observed, n_members=n_members, seed=seed,
                       thresholds_mm_h=recalibration_thresholds_mm_h, newest_scans_mm_h=newest_scans_mm_h), table


def recalibrate(perturbations: Perturbations, centres_mm_h: np.ndarray, observed_mm_h: np.ndarray, *,
                n_members: int = 24, seed: int = 0, thresholds_mm_h: Sequence[float] = THRESHOLDS_MM_H,
                newest_scans_mm_h: np.ndarray | None = None,
                neighbourhood_grid_px: Sequence[float] = NEIGHBOURHOOD_GRID_PX,
                scored_thresholds_mm_h: Sequence[float] = CALIBRATION_THRESHOLDS_MM_H,
                steps_shares: np.ndarray | None = None, steps_members: int = 0, groups: Sequence | None = None,
                steps_weight_grid: Sequence[float] = STEPS_WEIGHT_GRID) -> Perturbations:
    """``perturbations`` with a probability map fitted on ``centres`` (n, 6, H, W) against ``observed``:
    the members' exceedance shares at ``thresholds_mm_h``, averaged over a neighbourhood, mapped to the
    observed frequencies. Of ``neighbourhood_grid_px``, the neighbourhood whose fitted map has the lowest
    Brier score on these starts at ``scored_thresholds_mm_h`` (summed over leads) is kept.

    With ``steps_shares`` (n, 6, n_thresholds, H, W), the exceedance shares of a ``steps_members``-member
    STEPS ensemble at ``thresholds_mm_h`` on the same starts, and ``groups`` (the event of each start), the
    map also pools: per threshold, of ``steps_weight_grid``, the STEPS weight with the lowest Brier score
    when each group in turn is forecast with the map fitted on the others (held out, as a new event would
    be)."""
    if perturbations.match_cdf and newest_scans_mm_h is None:
        raise ValueError("these perturbations match the newest scan's distribution: pass newest_scans_mm_h")
    if not len(neighbourhood_grid_px):
        raise ValueError("no neighbourhood to try")
    scored = [float(t) for t in scored_thresholds_mm_h if float(t) in {float(u) for u in thresholds_mm_h}]
    pooling = steps_shares is not None
    if pooling and (groups is None or len(groups) != len(centres_mm_h) or len(set(groups)) < 2
                    or np.shape(steps_shares)[:3] != (len(centres_mm_h), N_LEADS, len(thresholds_mm_h))):
        raise ValueError("pooling with STEPS needs its shares (n, 6, n_thresholds, H, W) and the group (event) of "
                         "each start, at least two groups")
    group_names = sorted(set(groups)) if pooling else [None]
    # Counts per group (pooling: to fit each group's map on the others) and neighbourhood tried.
    counts = {g: [LevelCounts(n_members, thresholds_mm_h, px) for px in neighbourhood_grid_px] for g in group_names}
    member_counts = []  # pooling: each start's member counts (uint8), for the held-out maps
    for i in range(len(centres_mm_h)):
        members = perturb(centres_mm_h[i], n_members, issue_generator(seed, None, i), perturbations,
                          newest_scans_mm_h[i] if perturbations.match_cdf else None)
        share = member_shares(members, counts[group_names[0]][0].thresholds_mm_h)  # once for every neighbourhood
        for c in counts[groups[i] if pooling else None]:
            c.add_shares(share, np.asarray(observed_mm_h[i], dtype=np.float32))
        if pooling:
            member_counts.append(np.rint(share * n_members).astype(np.uint8))
    totals = [LevelCounts.merged([counts[g][a] for g in group_names]) for a in range(len(neighbourhood_grid_px))]
    maps = [c.fit() for c in totals]
    briers = [c.brier(m, scored) for c, m in zip(totals, maps, strict=True)]
    best = int(np.argmin(briers))
    chosen = maps[best]
    info = {**perturbations.provenance,
            "recalibration": {"thresholds_mm_h": list(totals[best].thresholds_mm_h), "prior_pixels": PRIOR_PIXELS,
                              "n_issue_times": int(len(centres_mm_h)), "n_members": int(n_members),
                              "pixels_per_lead": int(totals[best].pixels[0, 0].sum()),
                              "neighbourhood_px": float(neighbourhood_grid_px[best]),
                              "brier_by_neighbourhood_px": {f"{px:g}": round(b, 6) for px, b in
                                                            zip(neighbourhood_grid_px, briers, strict=True)},
                              "scored_thresholds_mm_h": scored}}
    if pooling:
        weights, by_weight = _pooled_weights(counts, best, member_counts, n_members, steps_shares, observed_mm_h,
                                             groups, steps_weight_grid)
        pools = any(w > 0 for w in weights)
        if pools:
            chosen = replace(chosen, steps_weight=weights, steps_members=int(steps_members))
        info["recalibration"].update(steps_weight=list(weights), steps_members=int(steps_members) if pools else 0,
                                     brier_by_steps_weight=by_weight,
                                     steps_weight_chosen_by="each event held out in turn, its map fitted on the others")
    p = perturbations
    return Perturbations(p.displacement_px, p.log_sigma, p.corr_px, p.gain, p.match_cdf, info, chosen)


def _pooled_weights(counts: dict, best: int, member_counts: list[np.ndarray], n_members: int,
                    steps_shares: np.ndarray, observed_mm_h: np.ndarray, groups: Sequence,
                    grid: Sequence[float]) -> tuple[tuple[float, ...], dict]:
    """Per threshold, the STEPS weight of ``grid`` with the lowest Brier score (summed over leads) when
    each group's starts are published by the map (neighbourhood ``best``) fitted on the other groups."""
    thresholds = counts[next(iter(counts))][best].thresholds_mm_h
    sq = np.zeros((len(grid), N_LEADS, len(thresholds)))
    n = np.zeros((N_LEADS, len(thresholds)))
    for g in counts:
        held_map = LevelCounts.merged([counts[o][best] for o in counts if o != g]).fit()
        levels, table = held_map.table(thresholds)
        for i in (i for i, gi in enumerate(groups) if gi == g):
            mapped = publish(member_counts[i] / n_members, thresholds, levels, table, held_map.neighbourhood_px)
            steps = np.asarray(steps_shares[i], dtype=np.float64)
            for k in range(N_LEADS):
                valid = np.isfinite(observed_mm_h[i][k])
                n[k] += valid.sum()
                for j, t in enumerate(thresholds):
                    event = (np.asarray(observed_mm_h[i][k])[valid] >= t).astype(np.float64)
                    for a, w in enumerate(grid):
                        pooled = (1 - w) * mapped[k, j][valid] + w * steps[k, j][valid]
                        sq[a, k, j] += float(((pooled - event) ** 2).sum())
    brier = (sq / np.maximum(n, 1)).sum(axis=1)  # (weights, thresholds), summed over leads
    weights = tuple(float(grid[int(np.argmin(brier[:, j]))]) for j in range(len(thresholds)))
    return weights, {f"{t:g}": {f"{w:g}": round(float(b), 6) for w, b in zip(grid, brier[:, j], strict=True)}
                     for j, t in enumerate(thresholds)}
