"""Recalibrating an ensemble's exceedance probabilities on training events.

The share of members at or above a threshold is a probability only if it is reliable. The
perturbed RainNet ensemble is not: held out, its members agree more often than the weather does
(the rain in the core of a storm may decay, which shifting and noising one forecast never shows).
A :class:`ProbabilityMap` first averages the shares over a Gaussian neighbourhood of
``neighbourhood_px`` pixels (0: none; :func:`nowcast_core.io.fields.neighbourhood`), then maps the
share to the frequency observed on training events, per lead and threshold: counts of pixels and of
events per raw level ``j / n_members`` (the averaged share rounded to it), made monotone by
pooling adjacent violators (isotonic regression), each level shrunk by ``prior_pixels`` pseudo-pixels
towards the previous lead's map (at +10 towards the raw share), so a sparsely seen level keeps what a
shorter lead learnt. Between levels,
and for another member count, the map is interpolated linearly; a threshold it was not fitted at
is left raw; and a pixel's published probability never rises with the threshold
(:func:`nowcast_core.io.fields.publish`, beside the files that store the map).

A map may also pool: with a weight w > 0 at a threshold (``steps_weight``, one per threshold), the
published probability there is ``(1 - w) * mapped share + w * (share of a steps_members-member pysteps
STEPS ensemble)``. Held out, the mapped shares stay over-confident where an event's storms decay unlike
the training events'; STEPS, whose small scales lose their predictability as pysteps models it, is
reliable there. Each weight is chosen on the training events, event by event held out
(:func:`nowcast_core.ensembles.calibration.recalibrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nowcast_core.contract import N_LEADS
from nowcast_core.io.fields import neighbourhood

#: Pseudo-pixels at the previous lead's value (at +10 the raw share) added to every level before the isotonic fit.
PRIOR_PIXELS = 100.0


@dataclass(frozen=True)
class ProbabilityMap:
    """``calibrated[lead][threshold][level]``: the probability to publish when a share ``raw[level]``
    of the members reaches ``thresholds_mm_h[threshold]`` at that lead."""

    thresholds_mm_h: tuple[float, ...]
    raw: tuple[float, ...]
    calibrated: tuple[tuple[tuple[float, ...], ...], ...]
    #: Gaussian neighbourhood (pixels) the shares are averaged over before the map; 0: none.
    neighbourhood_px: float = 0.0
    #: Per threshold, the weight of the pooled STEPS ensemble's shares in the published probability; (): none.
    steps_weight: tuple[float, ...] = ()
    #: Members of the pooled STEPS ensemble (0 when none is pooled).
    steps_members: int = 0

    def __post_init__(self):
        w = self.steps_weight
        if (w and len(w) != len(self.thresholds_mm_h)) or any(not 0 <= v < 1 for v in w) \
                or self.pools != (self.steps_members >= 2):
            raise ValueError(f"a probability map pools a STEPS ensemble of >= 2 members with a weight in [0, 1) per "
                             f"threshold, got weights {w} and {self.steps_members} members")
        if not 0 <= self.neighbourhood_px <= 30:
            raise ValueError(f"a probability map's neighbourhood must be 0 .. 30 pixels, got {self.neighbourhood_px}")
        shape = np.shape(self.calibrated)
        if shape != (N_LEADS, len(self.thresholds_mm_h), len(self.raw)):
            raise ValueError(f"a probability map needs {N_LEADS} x {len(self.thresholds_mm_h)} x {len(self.raw)} "
                             f"values, got {shape}")
        values = np.asarray(self.calibrated)
        if len(self.raw) < 2 or np.any(np.diff(self.raw) <= 0) or self.raw[0] != 0 or self.raw[-1] != 1:
            raise ValueError("a probability map's raw levels must rise from 0 to 1")
        if values.min() < 0 or values.max() > 1 or np.any(np.diff(values, axis=-1) < -1e-12):
            raise ValueError("a probability map's values must lie in [0, 1] and never fall as the raw share rises")

    def table(self, thresholds_mm_h: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(raw levels (L,), published values (6, n_thresholds, L)) for these thresholds; identity where
        a threshold is not mapped. What :func:`publish` applies and what a probability file stores."""
        levels = np.asarray(self.raw, dtype=np.float64)
        out = np.empty((N_LEADS, len(thresholds_mm_h), len(levels)))
        for j, t in enumerate(thresholds_mm_h):
            idx = self.threshold_index(t)
            out[:, j] = levels if idx is None else np.asarray(self.calibrated)[:, idx]
        return levels, out

    @property
    def pools(self) -> bool:
        """Whether the map pools a STEPS ensemble at any threshold."""
        return any(v > 0 for v in self.steps_weight)

    def steps_weights(self, thresholds_mm_h: Sequence[float]) -> np.ndarray:
        """The STEPS weight at each of these thresholds (0 where none is pooled or the threshold is not mapped)."""
        out = np.zeros(len(thresholds_mm_h))
        for j, t in enumerate(thresholds_mm_h):
            idx = self.threshold_index(t)
            if self.steps_weight and idx is not None:
                out[j] = self.steps_weight[idx]
        return out

    def threshold_index(self, threshold_mm_h: float) -> int | None:
        for j, t in enumerate(self.thresholds_mm_h):
            if abs(t - float(threshold_mm_h)) <= 1e-9 * max(1.0, t):
                return j
        return None

    def as_dict(self) -> dict:
        return {"thresholds_mm_h": list(self.thresholds_mm_h), "raw": list(_rounded(self.raw)),
                "calibrated": [[list(_rounded(row)) for row in lead] for lead in self.calibrated],
                "neighbourhood_px": float(self.neighbourhood_px), "steps_weight": [float(v) for v in self.steps_weight],
                "steps_members": int(self.steps_members)}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbabilityMap":
        return cls(tuple(float(t) for t in d["thresholds_mm_h"]), tuple(float(v) for v in d["raw"]),
                   tuple(tuple(tuple(float(v) for v in row) for row in lead) for lead in d["calibrated"]),
                   float(d.get("neighbourhood_px", 0.0)), tuple(float(v) for v in d.get("steps_weight", ())),
                   int(d.get("steps_members", 0)))


def member_shares(members_mm_h: np.ndarray, thresholds_mm_h: Sequence[float]) -> np.ndarray:
    """(6, n_thresholds, H, W): the share of members (n_members, 6, H, W) at or above each threshold."""
    m = np.asarray(members_mm_h)
    return np.stack([(m >= t).mean(axis=0) for t in thresholds_mm_h], axis=1)


def isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [weighted mean, weight, length]
    for v, w in zip(np.asarray(values, float), np.asarray(weights, float), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


class LevelCounts:
    """Pixels and events per (lead, threshold, raw level k of n members): what a map is fitted on.
    With ``neighbourhood_px``, a pixel's level is its neighbourhood-averaged share rounded to k / n."""

    def __init__(self, n_members: int, thresholds_mm_h: Sequence[float], neighbourhood_px: float = 0.0):
        self.n_members = int(n_members)
        self.thresholds_mm_h = tuple(float(t) for t in thresholds_mm_h)
        self.neighbourhood_px = float(neighbourhood_px)
        self.pixels = np.zeros((N_LEADS, len(self.thresholds_mm_h), self.n_members + 1))
        self.events = np.zeros_like(self.pixels)

    @classmethod
    def merged(cls, parts: Sequence["LevelCounts"]) -> "LevelCounts":
        """The counts of ``parts`` (same members, thresholds and neighbourhood) added up."""
        first = parts[0]
        out = cls(first.n_members, first.thresholds_mm_h, first.neighbourhood_px)
        for c in parts:
            out.pixels += c.pixels
            out.events += c.events
        return out

    def add(self, members_mm_h: np.ndarray, observed_mm_h: np.ndarray) -> None:
        """One start's members (n_members, 6, H, W) against its observations (6, H, W); NaN left out."""
        self.add_shares(member_shares(members_mm_h, self.thresholds_mm_h), observed_mm_h)

    def add_shares(self, share: np.ndarray, observed_mm_h: np.ndarray) -> None:
        """One start's :func:`member_shares` at this object's thresholds against its observations."""
        level = np.rint(neighbourhood(share, self.neighbourhood_px) * self.n_members).astype(np.int64)
        for k in range(N_LEADS):
            valid = np.isfinite(observed_mm_h[k])
            obs = observed_mm_h[k][valid]
            for j, t in enumerate(self.thresholds_mm_h):
                self.pixels[k, j] += np.bincount(level[k, j][valid], minlength=self.n_members + 1)
                self.events[k, j] += np.bincount(level[k, j][valid], weights=(obs >= t), minlength=self.n_members + 1)

    def fit(self, prior_pixels: float = PRIOR_PIXELS) -> ProbabilityMap:
        """The map: per lead and threshold, the observed frequency per level shrunk by ``prior_pixels``
        towards the previous lead's map (the raw share at the first lead), then made monotone. A level
        rarely seen at a long lead (all members at 5 mm/h at +60) keeps what the shorter lead learnt of
        the members' over-confidence instead of falling back to the raw share."""
        raw = np.arange(self.n_members + 1) / self.n_members
        weights = self.pixels + prior_pixels
        calibrated = np.empty_like(self.pixels)
        for k in range(N_LEADS):
            for j in range(len(self.thresholds_mm_h)):
                prior = raw if k == 0 else calibrated[k - 1, j]
                shrunk = (self.events[k, j] + prior_pixels * prior) / weights[k, j]
                calibrated[k, j] = _rounded(np.clip(isotonic(shrunk, weights[k, j]), 0.0, 1.0))
        return ProbabilityMap(self.thresholds_mm_h, _rounded(raw),
                              tuple(tuple(tuple(row) for row in lead) for lead in calibrated), self.neighbourhood_px)

    def brier(self, probability_map: ProbabilityMap, thresholds_mm_h: Sequence[float]) -> float:
        """The Brier score, summed over leads and ``thresholds_mm_h``, of ``probability_map``'s values at
        these levels on the pixels counted: how well a map fitted here scores here."""
        total = 0.0
        for t in thresholds_mm_h:
            j = self.thresholds_mm_h.index(float(t))
            values = np.asarray(probability_map.calibrated)[:, probability_map.threshold_index(t)]  # (6, L)
            sq = self.pixels[:, j] * values ** 2 - 2 * values * self.events[:, j] + self.events[:, j]
            total += float((sq.sum(axis=1) / np.maximum(self.pixels[:, j].sum(axis=1), 1)).sum())
        return total


def _rounded(values) -> tuple[float, ...]:
    """Six decimals: what the calibration file keeps, so a map and its file are equal."""
    return tuple(round(float(v), 6) for v in values)
