"""Dams, their catchments, and catchment rainfall of forecast fields.

A dams file (TOML or JSON, chosen by suffix) lists the dams::

    [[dams]]
    id = "dam-1"
    name = "Dam 1"
    pixel = [50, 71]                                  # (row, col) of the dam on the grid
    catchment = { centre = [50, 71], radius_px = 5 }  # a disc ...
    # catchment = { vertices = [[44.5, 65.5], [44.5, 76.5], [56.5, 76.5]] }  # ... or a polygon
    area_km2 = 78.5                                   # optional
    accum_thresholds_mm = [5, 10, 20, 50]             # optional: exceedance probabilities of the accumulation

JSON holds the same records, as ``{"dams": [...]}`` or a bare list.

Coordinates are pixel coordinates ``(row, col)``, row 0 at the top (north): pixel ``(r, c)``
is the unit square centred on ``(r, c)``, so it spans ``r - 0.5 .. r + 0.5``. A pixel belongs to
a catchment when its centre lies inside it (within ``radius_px`` of a disc's centre, or inside
a polygon; a centre exactly on a polygon's edge is undefined, so put vertices on half pixels).

:func:`dam_rainfall` turns a forecast (one rain-rate field per lead) into per-dam,
per-lead statistics and alert levels.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from nowcast_core.contract import GRID_SHAPE, LEAD_MINUTES, WET_MM_H

#: The dams file shipped with the package: the 7 competition dam pixels with nominal discs.
DEFAULT_DAMS_FILE = Path(__file__).resolve().parent / "data" / "dams.toml"
#: "watch": rain depth within one hour at or above this (mm); the first half of Korea's
#: emergency-text criterion "50 mm in 1 h with 90 mm in 3 h" (a nowcast sees only 1 h).
WATCH_DEPTH_1H_MM = 50.0
#: "emergency": rain depth within one hour at or above this (mm); Korea's "72 mm in 1 h".
EMERGENCY_DEPTH_1H_MM = 72.0
#: Default catchment-accumulation thresholds (mm) of the probabilistic products, per dam in the dams file.
DEFAULT_ACCUM_THRESHOLDS_MM = (5.0, 10.0, 20.0, 50.0)
#: The alert thresholds are depths within this many minutes of the issue time.
ALERT_WINDOW_MINUTES = 60


class Disc(BaseModel):
    """A disc catchment: the pixels whose centres lie within ``radius_px`` of ``centre``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    centre: tuple[float, float]
    radius_px: float = Field(gt=0)


class Polygon(BaseModel):
    """A polygon catchment: the pixels whose centres lie inside ``vertices`` (row, col)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    vertices: tuple[tuple[float, float], ...] = Field(min_length=3)


def _catchment_kind(value: Any) -> str | None:
    if isinstance(value, (Disc, Polygon)):
        return type(value).__name__.lower()
    if isinstance(value, dict):
        if "vertices" in value:
            return "polygon"
        if "centre" in value or "radius_px" in value:
            return "disc"
    return None


Catchment = Annotated[
    Annotated[Disc, Tag("disc")] | Annotated[Polygon, Tag("polygon")],
    Discriminator(
        _catchment_kind,
        custom_error_type="catchment_kind",
        custom_error_message="must be a disc {centre = [row, col], radius_px} or a polygon {vertices = [[row, col], ...]}",
    ),
]


class Dam(BaseModel):
    """One dam: its pixel on the grid and its catchment, in pixel coordinates (row, col).

    ``name`` defaults to ``id``. ``area_km2`` (optional) is the real catchment area, for display.
    Instances are immutable and hashable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: str = Field(min_length=1)
    name: str
    pixel: tuple[int, int]
    catchment: Catchment
    area_km2: float | None = Field(None, gt=0)
    #: Catchment accumulations (mm from the issue time) whose exceedance probability is stored per lead.
    accum_thresholds_mm: tuple[float, ...] = Field(DEFAULT_ACCUM_THRESHOLDS_MM, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and "id" in data:
            data = {**data, "name": data["id"]}
        return data


def catchment_mask(dam: Dam, shape: tuple[int, int] = GRID_SHAPE) -> np.ndarray:
    """Pixels of a dam's catchment.

    Parameters
    ----------
    dam : Dam
    shape : (rows, cols) of the grid.

    Returns
    -------
    bool array of ``shape``: True where the pixel centre lies inside the catchment.
    """
    rows, cols = np.indices(shape, dtype=np.float64)
    c = dam.catchment
    if isinstance(c, Disc):
        return (rows - c.centre[0]) ** 2 + (cols - c.centre[1]) ** 2 <= c.radius_px**2
    from matplotlib.path import Path as MplPath

    centres = np.column_stack([rows.ravel(), cols.ravel()])
    return MplPath(np.asarray(c.vertices, dtype=np.float64)).contains_points(centres).reshape(shape)


def catchment_means(rain_mm_h: np.ndarray, dams: Sequence[Dam]) -> dict[str, float | None]:
    """Catchment-mean rain rate (mm/h) per dam of one field; NaN pixels (no data) are left out,
    None where the whole catchment has no data."""
    out: dict[str, float | None] = {}
    for dam in dams:
        values = rain_mm_h[catchment_mask(dam, rain_mm_h.shape)]
        out[dam.id] = float(np.nanmean(values)) if np.isfinite(values).any() else None
    return out


def catchment_mean_rates(rain_mm_h: np.ndarray, dams: Sequence[Dam]) -> np.ndarray:
    """Catchment-mean rain rate per dam of finite fields: (..., H, W) -> float64 (..., n_dams)."""
    rates = np.asarray(rain_mm_h)
    index, starts, sizes, _ = _catchment_index(tuple(dams), rates.shape[-2:])
    values = rates.reshape(rates.shape[:-2] + (-1,))[..., index].astype(np.float64)
    return np.add.reduceat(values, starts, axis=-1) / sizes


def accumulated_depth_mm(mean_rates_mm_h: np.ndarray, lead_minutes: Sequence[int] = LEAD_MINUTES) -> np.ndarray:
    """Rain depth (mm) accumulated from the issue time to each lead, over the lead axis (-2) of
    catchment-mean rates (..., n_leads, n_dams). Each lead's rate holds over the interval that ends at
    it (from the previous lead, or the issue time): ``depth(L_k) = sum_{j <= k} rate_j * (L_j - L_{j-1}) / 60``."""
    steps = np.diff((0,) + tuple(int(m) for m in lead_minutes)) / 60.0
    return np.cumsum(np.asarray(mean_rates_mm_h, dtype=np.float64) * steps[:, None], axis=-2)


def validate_dams(dams: Sequence[Dam], shape: tuple[int, int] = GRID_SHAPE) -> None:
    """Check a list of dams against a grid.

    Raises
    ------
    ValueError
        No dams, a duplicate id, a dam pixel outside the grid, or a catchment with no pixel
        centre on the grid; the message names the dam and the field.
    """
    if not dams:
        raise ValueError("no dams given")
    seen: set[str] = set()
    for dam in dams:
        if dam.id in seen:
            raise ValueError(f"dam {dam.id!r}: field 'id': duplicate id")
        seen.add(dam.id)
        r, c = dam.pixel
        if not (0 <= r < shape[0] and 0 <= c < shape[1]):
            raise ValueError(f"dam {dam.id!r}: field 'pixel': ({r}, {c}) is outside the {shape[0]} x {shape[1]} grid")
        if any(t <= 0 for t in dam.accum_thresholds_mm) or list(dam.accum_thresholds_mm) != sorted(set(dam.accum_thresholds_mm)):
            raise ValueError(f"dam {dam.id!r}: field 'accum_thresholds_mm': must be positive and increasing")
        if not catchment_mask(dam, shape).any():
            raise ValueError(f"dam {dam.id!r}: field 'catchment': holds no pixel centre of the {shape[0]} x {shape[1]} grid")


def _records(path: Path) -> list:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".toml":
        try:
            doc: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
    elif suffix == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        if isinstance(doc, list):
            doc = {"dams": doc}
    else:
        raise ValueError(f"{path}: unknown dams file type {suffix!r}; use .toml or .json")
    if not isinstance(doc, dict) or "dams" not in doc:
        raise ValueError(f"{path}: no 'dams' list (TOML: [[dams]] tables; JSON: {{\"dams\": [...]}} or a list)")
    extra = sorted(set(doc) - {"dams"})
    if extra:
        raise ValueError(f"{path}: unknown top-level keys {extra}; only 'dams' is allowed")
    records = doc["dams"]
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: 'dams' must be a non-empty list of dams")
    return records


def _describe(error: dict) -> str:
    loc = ".".join(str(part) for part in error["loc"] if part not in ("disc", "polygon"))
    return f"field {loc or '(record)'!r}: {error['msg']}"


def load_dams(path: str | Path | None = None, shape: tuple[int, int] = GRID_SHAPE) -> list[Dam]:
    """Read and validate a dams file.

    Parameters
    ----------
    path : a ``.toml`` or ``.json`` dams file (see the module docstring);
        ``None`` reads :data:`DEFAULT_DAMS_FILE`.
    shape : the grid the dam pixels and catchments must lie on.

    Returns
    -------
    list of Dam, in file order.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file cannot be parsed, or a dam is invalid (missing or unknown field, wrong type,
        duplicate id, pixel outside the grid, catchment with no pixel); the message names the
        file, the dam and the field.
    """
    path = Path(path) if path is not None else DEFAULT_DAMS_FILE
    dams = []
    for i, record in enumerate(_records(path)):
        label = f"dam {record.get('id')!r} (entry {i + 1})" if isinstance(record, dict) else f"entry {i + 1}"
        try:
            dams.append(Dam.model_validate(record))
        except ValidationError as exc:
            problems = "; ".join(_describe(e) for e in exc.errors())
            raise ValueError(f"{path}: {label}: {problems}") from None
    try:
        validate_dams(dams, shape)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return dams


@lru_cache(maxsize=16)
def _catchment_index(dams: tuple[Dam, ...], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat pixel indices of all catchments, concatenated, with segment starts and sizes."""
    validate_dams(dams, shape)
    flat = [np.flatnonzero(catchment_mask(d, shape)) for d in dams]
    sizes = np.array([len(f) for f in flat])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    index = np.concatenate(flat)
    dam_pixels = np.array([r * shape[1] + c for r, c in (d.pixel for d in dams)])
    for a in (index, starts, sizes, dam_pixels):
        a.setflags(write=False)
    return index, starts, sizes, dam_pixels


def alert_level(depth_1h_mm: float) -> str | None:
    """``"emergency"``, ``"watch"`` or ``None`` for a rain depth (mm) within one hour."""
    if depth_1h_mm >= EMERGENCY_DEPTH_1H_MM:
        return "emergency"
    if depth_1h_mm >= WATCH_DEPTH_1H_MM:
        return "watch"
    return None


def dam_rainfall(
    rain_rate_mm_h: np.ndarray,
    dams: Sequence[Dam],
    lead_minutes: Sequence[int] = LEAD_MINUTES,
) -> list[dict[str, Any]]:
    """Catchment rainfall statistics of one forecast, per dam and lead.

    Parameters
    ----------
    rain_rate_mm_h : float array (n_leads, H, W)
        Forecast rain rates in mm/h, one field per lead, finite and >= 0 (as every
        forecaster returns them).
    dams : sequence of Dam
        Masks are computed once per distinct dam list and grid shape, and cached.
    lead_minutes : increasing lead times in minutes, one per field, at most 60.

    Returns
    -------
    list of dict, dam by dam (in ``dams`` order), lead by lead, with keys

    - ``dam_id``, ``lead_minutes``
    - ``mean_mm_h``: areal mean rain rate over the catchment's pixels
    - ``max_mm_h``: largest rain rate in the catchment
    - ``wet_fraction``: share of catchment pixels with >= :data:`~nowcast_core.contract.WET_MM_H`
    - ``depth_mm``: areal mean rain depth accumulated from the issue time to the lead. Each
      field's rate is taken to hold over the interval that ends at its lead (from the previous
      lead, or the issue time): ``depth(L_k) = sum_{j <= k} mean_j * (L_j - L_{j-1}) / 60``
      with ``L_0 = 0``; for the standard 10-minute leads, ``sum mean_j * 10 / 60``.
    - ``dam_pixel_mm_h``: rain rate at the dam pixel
    - ``alert``: ``"emergency"`` if ``depth_mm`` >= :data:`EMERGENCY_DEPTH_1H_MM`, else
      ``"watch"`` if >= :data:`WATCH_DEPTH_1H_MM`, else ``None``. All leads are within an
      hour of the issue time, so ``depth_mm`` is a depth within one hour.

    Raises
    ------
    ValueError
        Wrong shape, leads not increasing or beyond 60 minutes, or a NaN, infinite or negative
        rate on a pixel that some catchment or dam pixel uses (NaN must not turn into silent
        NaN statistics; forecasters never return it, so this is a bug upstream). Pixels no dam
        uses are not checked.
    """
    rates = np.asarray(rain_rate_mm_h)
    leads = tuple(int(m) for m in lead_minutes)
    if rates.ndim != 3 or rates.shape[0] != len(leads):
        raise ValueError(f"rain rates must be (n_leads={len(leads)}, H, W), got {rates.shape}")
    steps = np.diff((0,) + leads)
    if (steps <= 0).any() or leads[-1] > ALERT_WINDOW_MINUTES:
        raise ValueError(f"lead minutes must increase within (0, {ALERT_WINDOW_MINUTES}], got {leads}")
    dams = tuple(dams)
    shape = rates.shape[1:]
    index, starts, sizes, dam_pixels = _catchment_index(dams, shape)

    flat = rates.reshape(len(leads), -1)
    values = flat[:, index].astype(np.float64)  # (n_leads, sum of catchment sizes)
    at_dams = flat[:, dam_pixels].astype(np.float64)  # (n_leads, n_dams)
    for name, v, owner in (("catchment", values, np.repeat(np.arange(len(dams)), sizes)),
                           ("dam pixel", at_dams, np.arange(len(dams)))):
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            ids = sorted({dams[k].id for k in owner[bad.any(axis=0)]})
            raise ValueError(f"rain rates are NaN, infinite or negative on {name} pixels of dams {ids}")

    mean = np.add.reduceat(values, starts, axis=1) / sizes  # (n_leads, n_dams)
    peak = np.maximum.reduceat(values, starts, axis=1)
    wet = np.add.reduceat((values >= WET_MM_H).astype(np.float64), starts, axis=1) / sizes
    depth = accumulated_depth_mm(mean, leads)

    out = []
    for k, dam in enumerate(dams):
        for j, lead in enumerate(leads):
            d = float(depth[j, k])
            out.append({
                "dam_id": dam.id,
                "lead_minutes": lead,
                "mean_mm_h": float(mean[j, k]),
                "max_mm_h": float(peak[j, k]),
                "wet_fraction": float(wet[j, k]),
                "depth_mm": d,
                "dam_pixel_mm_h": float(at_dams[j, k]),
                "alert": alert_level(d),
            })
    return out


__all__ = [
    "ALERT_WINDOW_MINUTES",
    "DEFAULT_DAMS_FILE",
    "EMERGENCY_DEPTH_1H_MM",
    "WATCH_DEPTH_1H_MM",
    "Dam",
    "Disc",
    "Polygon",
    "DEFAULT_ACCUM_THRESHOLDS_MM",
    "alert_level",
    "catchment_mask",
    "catchment_mean_rates",
    "dam_rainfall",
    "load_dams",
    "validate_dams",
]
