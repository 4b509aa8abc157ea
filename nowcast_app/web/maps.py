"""Map images of rain fields with the dams and their catchments drawn and labelled (PNG, matplotlib Agg)."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from datetime import datetime

import numpy as np
from matplotlib import patheffects
from matplotlib.figure import Figure

from nowcast_core.dams import Dam
from nowcast_core.plots import (
    BAR_LABEL,
    LEVELS_MM_H,
    catchment_outline,
    label_positions,
    rain_classes,
)

_RENDER = threading.Lock()  # matplotlib's font and text machinery is not thread-safe


def render_png(field_mm_h: np.ndarray, dams: Sequence[Dam], title: str, *, size_px: int = 640) -> bytes:
    """One field as a PNG map: rain classes, catchment outlines, dam markers and names, a colour bar."""
    field = np.where(np.isfinite(field_mm_h), field_mm_h, np.nan)
    cmap, norm = rain_classes()
    with _RENDER:
        dpi = 100
        fig = Figure(figsize=(size_px / dpi, size_px * 1.1 / dpi), dpi=dpi, facecolor="#0b1d33")
        ax = fig.add_axes((0.02, 0.15, 0.96, 0.79))
        image = ax.imshow(np.ma.masked_invalid(field), cmap=cmap, norm=norm, interpolation="nearest")
        ax.contour(catchment_outline(tuple(dams), field.shape), levels=[0.5], colors="white", linewidths=1.0)
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
        bar.set_label(BAR_LABEL, color="white")
        bar.ax.tick_params(colors="white", labelsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", facecolor=fig.get_facecolor())
    return buf.getvalue()


def title_for(kind: str, issue_time: datetime, lead_minutes: int, method: str | None = None) -> str:
    stamp = f"{issue_time:%Y-%m-%d %H:%M} UTC"
    if kind == "observed":
        return f"observed {stamp}"
    return f"{method} +{lead_minutes} min from {stamp}"
