"""Map images of rain fields with the dams and their catchments drawn and labelled (PNG, matplotlib Agg)."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

import numpy as np
from matplotlib import patheffects
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from nowcast_core.dams import Dam, catchment_mask

#: Rain-rate classes (mm/h) and their colours, shared with the page's legend (GET /api/v1/legend).
LEVELS_MM_H = (0.1, 0.5, 1, 2, 5, 10, 20, 50, 100)
COLOURS = ("#c6e6ff", "#7cc0ff", "#2f8cf0", "#1ec84b", "#f5e13c", "#f59a23", "#e5322d", "#b0228c", "#5a0f6e")
_RENDER = threading.Lock()  # matplotlib's font and text machinery is not thread-safe


@lru_cache(maxsize=8)
def _outline(dams: tuple[Dam, ...], shape: tuple[int, int]) -> np.ndarray:
    union = np.zeros(shape, dtype=float)
    for dam in dams:
        union = np.maximum(union, catchment_mask(dam, shape))
    return union


def label_positions(dams: Sequence[Dam], shape: tuple[int, int], char_px: float = 1.9,
                    height_px: float = 4.5) -> list[tuple[float, float, str]]:
    """(x, y, alignment) of each dam's label: the first of a few spots beside the dam, further out
    each round, whose box overlaps no label placed before (greedy; dams in file order)."""
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for dam in dams:
        r, c = dam.pixel
        width = char_px * len(dam.id)
        choice = None
        for reach in (4, 8, 12, 16):
            for dx, dy in ((1, -1), (-1, -1), (1, 1), (-1, 1), (1, 0), (-1, 0)):
                x, y = c + dx * reach, r + dy * reach * 0.7
                x0 = x if dx >= 0 else x - width
                box = (x0, y - height_px / 2, x0 + width, y + height_px / 2)
                inside = 0 <= box[0] and box[2] <= shape[1] and 0 <= box[1] and box[3] <= shape[0]
                if inside and all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed):
                    choice = (x, y, "left" if dx >= 0 else "right", box)
                    break
            if choice:
                break
        if choice is None:
            choice = (c + 3, r - 3, "left", (c + 3, r - 5, c + 3 + width, r - 1))
        placed.append(choice[3])
        out.append(choice[:3])
    return out


def render_png(field_mm_h: np.ndarray, dams: Sequence[Dam], title: str, *, size_px: int = 640) -> bytes:
    """One field as a PNG map: rain classes, catchment outlines, dam markers and names, a colour bar."""
    field = np.where(np.isfinite(field_mm_h), field_mm_h, np.nan)
    cmap = ListedColormap(COLOURS).with_extremes(under="#18324f", bad="#3a3a3a")  # dry, no data
    norm = BoundaryNorm(LEVELS_MM_H + (1000,), cmap.N)
    with _RENDER:
        dpi = 100
        fig = Figure(figsize=(size_px / dpi, size_px * 1.1 / dpi), dpi=dpi, facecolor="#0b1d33")
        ax = fig.add_axes((0.02, 0.15, 0.96, 0.79))
        image = ax.imshow(np.ma.masked_invalid(field), cmap=cmap, norm=norm, interpolation="nearest")
        ax.contour(_outline(tuple(dams), field.shape), levels=[0.5], colors="white", linewidths=1.0)
        halo = [patheffects.withStroke(linewidth=3, foreground="black")]
        for dam, (x, y, ha) in zip(dams, label_positions(dams, field.shape), strict=True):
            r, c = dam.pixel
            ax.plot(c, r, marker="^", color="white", markeredgecolor="black", markersize=7)
            ax.plot([c, x], [r, y], color="white", linewidth=0.6)
            ax.text(x, y, dam.id, color="white", fontsize=10, fontweight="bold", path_effects=halo, ha=ha, va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, color="white", fontsize=12)
        cax = fig.add_axes((0.08, 0.075, 0.84, 0.022))
        bar = fig.colorbar(image, cax=cax, orientation="horizontal", extend="min", ticks=LEVELS_MM_H)
        bar.ax.set_xticklabels([f"{v:g}" for v in LEVELS_MM_H])
        bar.set_label("rain rate (mm/h)", color="white")
        bar.ax.tick_params(colors="white", labelsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", facecolor=fig.get_facecolor())
    return buf.getvalue()


def title_for(kind: str, issue_time: datetime, lead_minutes: int, method: str | None = None) -> str:
    stamp = f"{issue_time:%Y-%m-%d %H:%M} UTC"
    if kind == "observed":
        return f"observed {stamp}"
    return f"{method} +{lead_minutes} min from {stamp}"
