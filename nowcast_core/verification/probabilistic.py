"""Probabilistic verification as additive counts (any period aggregates exactly by summing them).

Per forecast, lead and rain-rate threshold, :class:`ProbCounts` holds the reliability-diagram
counts of 10 probability bins [0, 0.1), [0.1, 0.2), ..., [0.9, 1] (pixels, summed forecast
probability, observed events per bin, as pysteps' ``reldiag_accum`` keeps them) and the exact sum
of squared probability errors. From summed counts:

- ``brier``: the mean squared error of the probabilities (exact);
- ``brier_reliability``, ``brier_resolution``, ``brier_uncertainty``: Murphy's decomposition over
  the bins (reliability - resolution + uncertainty equals the Brier score up to the spread of
  probabilities within a bin);
- ``roc_area``: area under the ROC curve at the probability thresholds 0, 0.1, ..., 0.9 (pysteps
  ``ROC_curve_compute``; exact from the bins, since a forecast at or above k/10 lies in bin k or higher);
- the reliability diagram: per bin the mean forecast probability and the observed frequency.

For catchment accumulations of an ensemble (one value per member): :func:`crps` (pysteps) and
:func:`rank` of the observation among the members (rank-histogram counts).
Pixels where the radar saw nothing (NaN) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

N_BINS = 10


def probability_bin(p: np.ndarray) -> np.ndarray:
    """Bin index 0..9 of probabilities: k for k/10 <= p < (k+1)/10, 9 for p >= 0.9 (member fractions
    k/n exactly on an edge go up: p >= k/10 is exactly bin >= k)."""
    return np.clip(np.floor(np.asarray(p, dtype=np.float64) * N_BINS + 1e-9), 0, N_BINS - 1).astype(np.int64)


@dataclass
class ProbCounts:
    """Additive counts of probability forecasts of one event (rain rate >= a threshold)."""

    n: int = 0
    brier_sum: float = 0.0
    bin_n: list[int] = field(default_factory=lambda: [0] * N_BINS)
    bin_prob_sum: list[float] = field(default_factory=lambda: [0.0] * N_BINS)
    bin_events: list[int] = field(default_factory=lambda: [0] * N_BINS)

    @classmethod
    def of(cls, probability: np.ndarray, observed: np.ndarray, threshold: float) -> "ProbCounts":
        """Counts of probabilities (any shape) against observed values of the same shape."""
        p = np.asarray(probability, dtype=np.float64)
        o = np.asarray(observed, dtype=np.float64)
        if p.shape != o.shape:
            raise ValueError(f"probabilities {p.shape} and observations {o.shape} differ")
        if np.nanmin(p, initial=0.0) < 0 or np.nanmax(p, initial=0.0) > 1:
            raise ValueError("probabilities must lie in [0, 1]")
        valid = np.isfinite(o) & np.isfinite(p)
        p, o = p[valid], o[valid]
        events = (o >= threshold).astype(np.float64)
        b = probability_bin(p)
        return cls(int(len(p)), float(((p - events) ** 2).sum()),
                   [int(v) for v in np.bincount(b, minlength=N_BINS)],
                   [float(v) for v in np.bincount(b, weights=p, minlength=N_BINS)],
                   [int(v) for v in np.bincount(b, weights=events, minlength=N_BINS)])

    def add(self, other: "ProbCounts") -> "ProbCounts":
        self.n += other.n
        self.brier_sum += other.brier_sum
        self.bin_n = [a + b for a, b in zip(self.bin_n, other.bin_n, strict=True)]
        self.bin_prob_sum = [a + b for a, b in zip(self.bin_prob_sum, other.bin_prob_sum, strict=True)]
        self.bin_events = [a + b for a, b in zip(self.bin_events, other.bin_events, strict=True)]
        return self

    def as_dict(self) -> dict:
        return {"n": self.n, "brier_sum": self.brier_sum, "bin_n": self.bin_n, "bin_prob_sum": self.bin_prob_sum,
                "bin_events": self.bin_events}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbCounts":
        return cls(int(d["n"]), float(d["brier_sum"]), list(d["bin_n"]), list(d["bin_prob_sum"]), list(d["bin_events"]))

    # -- scores ---------------------------------------------------------------------------------
    def brier(self) -> float:
        return self.brier_sum / self.n if self.n else float("nan")

    def decomposition(self) -> dict[str, float]:
        """Murphy's reliability, resolution and uncertainty over the bins."""
        if not self.n:
            return {"brier_reliability": float("nan"), "brier_resolution": float("nan"),
                    "brier_uncertainty": float("nan")}
        n = np.asarray(self.bin_n, float)
        used = n > 0
        pbar = np.asarray(self.bin_prob_sum)[used] / n[used]
        obar_k = np.asarray(self.bin_events)[used] / n[used]
        obar = sum(self.bin_events) / self.n
        return {"brier_reliability": float((n[used] * (pbar - obar_k) ** 2).sum() / self.n),
                "brier_resolution": float((n[used] * (obar_k - obar) ** 2).sum() / self.n),
                "brier_uncertainty": float(obar * (1 - obar))}

    def reliability_diagram(self) -> list[dict]:
        """Per bin: its pixels, mean forecast probability, observed frequency (None where empty)."""
        return [{"bin": k, "n": n, "forecast_probability": ps / n if n else None,
                 "observed_frequency": ev / n if n else None}
                for k, (n, ps, ev) in enumerate(zip(self.bin_n, self.bin_prob_sum, self.bin_events, strict=True))]

    def roc_area(self) -> float:
        from pysteps.verification import probscores

        n = np.asarray(self.bin_n)
        ev = np.asarray(self.bin_events)
        non = n - ev
        if ev.sum() == 0 or non.sum() == 0:
            return float("nan")
        roc = probscores.ROC_curve_init(0.0, N_BINS)
        roc["prob_thrs"] = np.arange(N_BINS) / N_BINS  # 0, 0.1, ..., 0.9: p >= j/10  <=>  bin >= j
        for j in range(N_BINS):
            roc["hits"][j] = ev[j:].sum()
            roc["false_alarms"][j] = non[j:].sum()
            roc["misses"][j] = ev.sum() - roc["hits"][j]
            roc["corr_neg"][j] = non.sum() - roc["false_alarms"][j]
        return float(probscores.ROC_curve_compute(roc, compute_area=True)[2])

    def summary(self, digits: int = 4) -> dict:
        out = {"n_pixels": self.n, "brier": self.brier(), **self.decomposition(), "roc_area": self.roc_area()}
        return {k: (v if isinstance(v, int) else _round(v, digits)) for k, v in out.items()}


def _round(x: float, digits: int) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def reliability_deviations(counts: ProbCounts, min_pixels: int = 1000) -> list[dict]:
    """Per bin holding at least ``min_pixels``: observed frequency minus mean forecast probability."""
    return [{**b, "deviation": b["observed_frequency"] - b["forecast_probability"]}
            for b in counts.reliability_diagram() if b["n"] >= min_pixels]


def crps(members: Sequence[float], observed: float) -> float:
    """CRPS of one ensemble (member values) against one observed value (pysteps ``CRPS``)."""
    from pysteps.verification import probscores

    return float(probscores.CRPS(np.asarray(members, float).reshape(-1, 1), np.asarray([observed], float)))


def rank(members: Sequence[float], observed: float, rng: np.random.Generator | None = None) -> int:
    """Rank of the observation among the members (0 .. n_members); ties are broken at random."""
    m = np.asarray(members, float)
    below, equal = int((m < observed).sum()), int((m == observed).sum())
    if not equal:
        return below
    rng = rng if rng is not None else np.random.default_rng(0)
    return below + int(rng.integers(0, equal + 1))
