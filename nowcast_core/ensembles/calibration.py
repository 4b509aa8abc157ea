"""Calibrating the production ensemble's perturbations on training events.

Per lead, a grid search over the displacement spread, the log-noise amplitude and the gain for the
smallest sum of Brier scores at the calibration thresholds (default 1 and 5 mm/h), pixel by
pixel over every issue time given. Every (lead, candidate) is scored with the same random draws
(common random numbers), so candidates differ only by their parameters. Then, with the chosen
perturbations, the members' exceedance shares at the product thresholds are recalibrated to the
frequencies observed on the same events (:mod:`nowcast_core.ensembles.recalibration`), over the
neighbourhood of the grid whose map scores the lowest Brier score there at the calibration thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

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

DISPLACEMENT_GRID_PX = (0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 11.0, 15.0, 20.0)
LOG_SIGMA_GRID = (0.0, 0.2, 0.4, 0.7, 1.0, 1.3, 1.7, 2.2)
GAIN_GRID = (0.6, 0.75, 0.9, 1.0, 1.15, 1.3, 1.5, 1.75)
#: Gaussian neighbourhoods (pixels) the recalibration tries.
NEIGHBOURHOOD_GRID_PX = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
CALIBRATION_THRESHOLDS_MM_H = (1.0, 5.0)


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
                scored_thresholds_mm_h: Sequence[float] = CALIBRATION_THRESHOLDS_MM_H) -> Perturbations:
    """``perturbations`` with a probability map fitted on ``centres`` (n, 6, H, W) against ``observed``:
    the members' exceedance shares at ``thresholds_mm_h``, averaged over a neighbourhood, mapped to the
    observed frequencies. Of ``neighbourhood_grid_px``, the neighbourhood whose fitted map has the lowest
    Brier score on these starts at ``scored_thresholds_mm_h`` (summed over leads) is kept."""
    if perturbations.match_cdf and newest_scans_mm_h is None:
        raise ValueError("these perturbations match the newest scan's distribution: pass newest_scans_mm_h")
    if not len(neighbourhood_grid_px):
        raise ValueError("no neighbourhood to try")
    scored = [float(t) for t in scored_thresholds_mm_h if float(t) in {float(u) for u in thresholds_mm_h}]
    counts = [LevelCounts(n_members, thresholds_mm_h, px) for px in neighbourhood_grid_px]
    for i in range(len(centres_mm_h)):
        members = perturb(centres_mm_h[i], n_members, issue_generator(seed, None, i), perturbations,
                          newest_scans_mm_h[i] if perturbations.match_cdf else None)
        share = member_shares(members, counts[0].thresholds_mm_h)  # once for every neighbourhood tried
        for c in counts:
            c.add_shares(share, np.asarray(observed_mm_h[i], dtype=np.float32))
    maps = [c.fit() for c in counts]
    briers = [c.brier(m, scored) for c, m in zip(counts, maps, strict=True)]
    best = int(np.argmin(briers))
    info = {**perturbations.provenance,
            "recalibration": {"thresholds_mm_h": list(counts[best].thresholds_mm_h), "prior_pixels": PRIOR_PIXELS,
                              "n_issue_times": int(len(centres_mm_h)), "n_members": int(n_members),
                              "pixels_per_lead": int(counts[best].pixels[0, 0].sum()),
                              "neighbourhood_px": float(neighbourhood_grid_px[best]),
                              "brier_by_neighbourhood_px": {f"{px:g}": round(b, 6) for px, b in
                                                            zip(neighbourhood_grid_px, briers, strict=True)},
                              "scored_thresholds_mm_h": scored}}
    p = perturbations
    return Perturbations(p.displacement_px, p.log_sigma, p.corr_px, p.gain, p.match_cdf, info, maps[best])
