"""The production ensemble: calibrated stochastic perturbations of a deterministic forecast.

Each member is the deterministic (centre) forecast

0. with ``match_cdf``: probability-matched, lead by lead, to the rain-rate distribution of the newest
   input scan (pysteps ``nonparam_match_empirical_cdf``; as STEPS does, rain is taken to keep its
   intensity distribution over the hour, while RainNet's forecast smooths heavy rain away);
1. displaced as a whole: one random direction and size per member, ``N(0, d_k^2)`` pixels along
   each axis at lead k (a motion error that grows with lead), bilinear, edges held;
2. multiplied by a per-lead gain ``g_k`` (RainNet's forecast loses intensity with lead) and by spatially correlated log-normal noise ``exp(s_k z - s_k^2 / 2)``: ``z`` a
   white field smoothed by a Gaussian of ``corr_px`` pixels and scaled to unit variance, one
   field per member for all leads (the mean factor is 1: rain is neither added nor removed).

``d_k``, ``s_k`` and ``g_k`` are per lead, calibrated on training events to minimise the Brier score at
1 and 5 mm/h (:mod:`nowcast_core.ensembles.calibration`) and stored as data with how they were
found (``nowcast_core/data/ensemble_calibration.json``). The same file may hold a probability map
(:mod:`nowcast_core.ensembles.recalibration`): the members' exceedance shares are then published as
the frequencies observed on the calibration events (``ensemble.probability_map``). The centre is a forecaster of
:func:`nowcast_core.forecasters.get_method` (default ``rainnet``, its ``model_path`` a parameter).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from nowcast_core.postprocessing import match_intensity

from nowcast_core.contract import N_LEADS
from nowcast_core.ensembles import register
from nowcast_core.ensembles.base import check_inputs, check_members, empty, issue_generator
from nowcast_core.ensembles.recalibration import ProbabilityMap

CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "data" / "ensemble_calibration.json"


@dataclass(frozen=True)
class Perturbations:
    """Per-lead displacement spread (pixels) and log-noise amplitude, and the noise's correlation length."""

    displacement_px: tuple[float, ...] = (0.0,) * N_LEADS
    log_sigma: tuple[float, ...] = (0.0,) * N_LEADS
    corr_px: float = 6.0
    #: Per-lead intensity gain of the centre (RainNet smooths heavy rain away at long leads).
    gain: tuple[float, ...] = (1.0,) * N_LEADS
    #: Probability-match the centre to the newest input scan before perturbing it.
    match_cdf: bool = False
    #: How the values were found (events, objective, grid); for people, not used in computing.
    provenance: dict = field(default_factory=dict, compare=False)
    #: The exceedance probabilities' recalibration (:mod:`nowcast_core.ensembles.recalibration`); None: raw shares.
    probability_map: ProbabilityMap | None = None
    #: Per lead, the member quantile levels (low, high) published as the dam depth's 10 .. 90 % range
    #: (``accum_mm_p10`` / ``_p90``): those at which observed depths on held-out events fell below and above
    #: 10 % of the time (``bench/probabilistic_skill.py --write-range-levels``); empty: the members' 0.1 and 0.9.
    dam_range_levels: tuple = ()

    def __post_init__(self):
        if len(self.displacement_px) != N_LEADS or len(self.log_sigma) != N_LEADS or len(self.gain) != N_LEADS:
            raise ValueError(f"perturbations need {N_LEADS} values per lead, got {len(self.displacement_px)} "
                             f"displacements and {len(self.log_sigma)} noise amplitudes")
        if min(self.displacement_px) < 0 or min(self.log_sigma) < 0 or self.corr_px <= 0 or min(self.gain) <= 0:
            raise ValueError("perturbation spreads must be >= 0, corr_px and gains > 0")
        if self.dam_range_levels and (len(self.dam_range_levels) != N_LEADS or not all(
                len(pair) == 2 and 0.0 <= pair[0] < 0.5 < pair[1] <= 1.0 for pair in self.dam_range_levels)):
            raise ValueError(f"dam range levels need {N_LEADS} (low, high) pairs with 0 <= low < 0.5 < high <= 1, "
                             f"got {self.dam_range_levels!r}")

    @classmethod
    def load(cls, path: str | Path = CALIBRATION_FILE) -> "Perturbations":
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(tuple(float(v) for v in doc["displacement_px"]), tuple(float(v) for v in doc["log_sigma"]),
                       float(doc["corr_px"]), tuple(float(v) for v in doc.get("gain", (1.0,) * N_LEADS)),
                       bool(doc.get("match_cdf", False)), doc.get("provenance", {}),
                       ProbabilityMap.from_dict(doc["probability_map"]) if doc.get("probability_map") else None,
                       tuple(tuple(float(v) for v in pair) for pair in doc.get("dam_range_levels") or ()))
        except FileNotFoundError:
            raise FileNotFoundError(f"ensemble calibration file not found: {path}") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not an ensemble calibration ({exc})") from None

    def to_json(self) -> str:
        doc = asdict(self)
        doc["probability_map"] = self.probability_map.as_dict() if self.probability_map is not None else None
        return json.dumps(doc, indent=2) + "\n"

    def digest(self) -> str:
        mapping = self.probability_map.as_dict() if self.probability_map is not None else None
        floats = [[float(v) for v in values] for values in (self.displacement_px, self.log_sigma, self.gain)]
        levels = [[float(v) for v in pair] for pair in self.dam_range_levels]
        key = json.dumps([floats[0], floats[1], float(self.corr_px), floats[2], self.match_cdf]
                         + ([mapping] if mapping is not None else []) + ([levels] if levels else []))
        return hashlib.sha256(key.encode()).hexdigest()[:8]


def correlated_noise(rng: np.random.Generator, shape: tuple[int, int], corr_px: float) -> np.ndarray:
    """A unit-variance Gaussian field with Gaussian correlation of ``corr_px`` pixels."""
    from scipy.ndimage import gaussian_filter

    z = gaussian_filter(rng.standard_normal(shape), corr_px, mode="wrap")
    return z / max(float(z.std()), 1e-12)


def draw(rng: np.random.Generator, n_members: int, shape: tuple[int, int], corr_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Each member's random part: displacement directions (n_members, 2) and noise fields (n_members, H, W)."""
    directions = np.empty((n_members, 2))
    noise = np.empty((n_members,) + tuple(shape))
    for m in range(n_members):  # member by member: a member's draw does not depend on the ensemble size
        directions[m] = rng.standard_normal(2)
        noise[m] = correlated_noise(rng, shape, corr_px)
    return directions, noise


def displaced(field_mm_h: np.ndarray, directions: np.ndarray, displacement_px: float) -> np.ndarray:
    """One lead's field shifted by ``directions * displacement_px`` per member: (n_members, H, W)."""
    from scipy.ndimage import shift

    if displacement_px <= 0:
        return np.repeat(field_mm_h[None], len(directions), axis=0)
    return np.stack([shift(field_mm_h, d * displacement_px, order=1, mode="nearest") for d in directions])


def log_normal_factor(noise: np.ndarray, log_sigma: float) -> np.ndarray:
    """Multiplicative noise of mean 1: ``exp(s z - s^2 / 2)``."""
    return np.exp(log_sigma * noise - 0.5 * log_sigma * log_sigma) if log_sigma > 0 else np.ones_like(noise)


def matched(centre_mm_h: np.ndarray, newest_scan_mm_h: np.ndarray) -> np.ndarray:
    """Each lead of a (6, H, W) forecast probability-matched to the newest scan's rain rates
    (:func:`nowcast_core.postprocessing.match_intensity`; NaN is dry, a dry scan leaves the forecast)."""
    return match_intensity(np.asarray(centre_mm_h)[None], np.asarray(newest_scan_mm_h)[None])[0]


def perturb(centre_mm_h: np.ndarray, n_members: int, rng: np.random.Generator, p: Perturbations,
            newest_scan_mm_h: np.ndarray | None = None) -> np.ndarray:
    """(6, H, W) centre forecast -> float32 (n_members, 6, H, W) perturbed members (mm/h >= 0).

    ``newest_scan_mm_h`` (H, W) is needed when ``p.match_cdf``."""
    centre = np.nan_to_num(np.asarray(centre_mm_h, dtype=np.float32), nan=0.0)
    if p.match_cdf:
        if newest_scan_mm_h is None:
            raise ValueError("these perturbations match the newest scan's distribution: pass newest_scan_mm_h")
        centre = matched(centre, newest_scan_mm_h)
    directions, noise = draw(rng, n_members, centre.shape[1:], p.corr_px)
    out = np.empty((n_members,) + centre.shape, np.float32)
    for k in range(centre.shape[0]):
        out[:, k] = (displaced(centre[k], directions, p.displacement_px[k]) * log_normal_factor(noise, p.log_sigma[k])
                     * p.gain[k])
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0), 0.0, None)


class CentredEnsemble:
    """Members around a deterministic forecaster's forecast (the production one: RainNet)."""

    def __init__(self, n_members: int = 24, seed: int = 42, centre_method: str = "rainnet",
                 perturbations: Perturbations | None = None, **centre_kwargs):
        self.n_members, self.seed = check_members(n_members), int(seed)
        self.centre_method, self.centre_kwargs = centre_method, centre_kwargs
        self.perturbations = perturbations if perturbations is not None else Perturbations.load()
        self._centre = self._steps = None
        self.name = "rainnet-ensemble" if centre_method == "rainnet" else f"{centre_method}-ensemble"
        self.version = f"{centre_method}-perturbed-{self.n_members}members-seed{self.seed}-cal{self.perturbations.digest()}"
        #: How the members' exceedance shares become probabilities (None: as they are).
        self.probability_map = self.perturbations.probability_map
        #: Which member quantiles the dam depth's published 10 .. 90 % range is (empty: 0.1 and 0.9).
        self.dam_range_levels = self.perturbations.dam_range_levels

    def centre(self):
        """The centre forecaster (loaded on first use)."""
        if self._centre is None:
            from nowcast_core.forecasters import get_method

            self._centre = get_method(self.centre_method, **self.centre_kwargs)
        return self._centre

    def members(self, rain_rate_mm_h: np.ndarray, *, issue_times: Sequence[datetime] | None = None,
                centre_mm_h: np.ndarray | None = None) -> np.ndarray:
        x = check_inputs(rain_rate_mm_h)
        if centre_mm_h is None:
            centre_mm_h = self.centre().forecast(x) if len(x) else np.zeros((0, N_LEADS) + x.shape[2:], np.float32)
        centre_mm_h = np.asarray(centre_mm_h, dtype=np.float32)
        if centre_mm_h.shape != (len(x), N_LEADS) + x.shape[2:]:
            raise ValueError(f"centre forecast must be {(len(x), N_LEADS) + x.shape[2:]}, got {centre_mm_h.shape}")
        out = empty(len(x), self.n_members, x.shape[2:])
        for k in range(len(x)):
            rng = issue_generator(self.seed, issue_times[k] if issue_times is not None else None, k)
            out[k] = perturb(centre_mm_h[k], self.n_members, rng, self.perturbations, x[k, -1])
        return out

    def steps_members(self, rain_rate_mm_h: np.ndarray, *, issue_times: Sequence[datetime] | None = None
                      ) -> np.ndarray | None:
        """The pooled STEPS ensemble's members (same seed, same issue-time draws); None where the map pools none."""
        steps = self.steps_ensemble()
        return None if steps is None else steps.members(rain_rate_mm_h, issue_times=issue_times)

    def steps_ensemble(self):
        """The STEPS ensemble the probability map pools (loaded on first use); None when it pools none."""
        m = self.probability_map
        if m is None or not m.pools:
            return None
        if self._steps is None:
            from nowcast_core.ensembles import get_ensemble

            self._steps = get_ensemble("steps", n_members=m.steps_members, seed=self.seed)
        return self._steps


@register("rainnet-ensemble")
def make_rainnet_ensemble(n_members: int = 24, seed: int = 42, model_path: str | Path | None = None,
                          calibration: str | Path | Perturbations | None = None) -> CentredEnsemble:
    """RainNet-centred ensemble; ``model_path`` the RainNet file (None: bundled), ``calibration`` a
    calibration file or :class:`Perturbations` (None: the shipped calibration)."""
    p = calibration if isinstance(calibration, Perturbations) or calibration is None else Perturbations.load(calibration)
    kwargs = {"model_path": model_path} if model_path is not None else {}
    return CentredEnsemble(n_members, seed, "rainnet", p, **kwargs)
