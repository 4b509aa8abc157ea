"""Figures for operators: skill against lead, forecast panels with catchments."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402

from nowcast_core.dams import Dam, catchment_mask  # noqa: E402
from nowcast_core.verification.scores import score_key  # noqa: E402

#: Rain-rate classes (mm/h) and their colours: every map, the dashboard and its legend (GET /api/v1/legend).
LEVELS_MM_H = (0.1, 0.5, 1, 2, 5, 10, 20, 50, 100)
COLOURS = ("#c6e6ff", "#7cc0ff", "#2f8cf0", "#1ec84b", "#f5e13c", "#f59a23", "#e5322d", "#b0228c", "#5a0f6e")
#: Below the lowest class (dry), and where the radar saw nothing (no data): far apart in lightness, so an
#: outage never reads as dry weather.
DRY_COLOUR = "#18324f"
NO_DATA_COLOUR = "#8c8c8c"
#: The colour bar's caption on every map: what the arrow below 0.1 and the grey mean (the dams are triangles).
BAR_LABEL = "rain rate (mm/h); the arrow below 0.1: dry; grey: no data"


@lru_cache(maxsize=8)
def catchment_outline(dams: tuple[Dam, ...], shape: tuple[int, int]) -> np.ndarray:
    """1 inside any dam's catchment, else 0 (contoured at 0.5 to draw the catchments)."""
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


def rain_classes():
    """(colour map, norm) of :data:`LEVELS_MM_H`: below 0.1 mm/h :data:`DRY_COLOUR`, NaN
    :data:`NO_DATA_COLOUR`."""
    cmap = ListedColormap(COLOURS).with_extremes(under=DRY_COLOUR, bad=NO_DATA_COLOUR)
    return cmap, BoundaryNorm(LEVELS_MM_H + (1000,), cmap.N)


def plot_skill(rows: Sequence[dict], out: Path, threshold_mm_h: float = 1.0) -> Path:
    """CSI (at ``threshold`` mm/h and 0.1) and MAE against lead, one line per method."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for method in sorted({r["method"] for r in rows}):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["lead_minutes"])
        leads = [r["lead_minutes"] for r in mine]
        axes[0].plot(leads, [r.get(score_key("csi", 0.1)) for r in mine], marker="o", label=method)
        axes[1].plot(leads, [r.get(score_key("csi", threshold_mm_h)) for r in mine], marker="o", label=method)
        axes[2].plot(leads, [r["mae_mm_h"] for r in mine], marker="o", label=method)
    for ax, title in zip(axes, ("CSI at 0.1 mm/h", f"CSI at {threshold_mm_h:g} mm/h", "MAE (mm/h)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("lead (minutes)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)


def plot_forecast(inputs_mm_h, forecast_mm_h, issue_time, dams, out: Path, method: str) -> Path:
    """The four input scans and six leads of one issue time: rain classes, catchments outlined, dam
    markers in every panel, their names (with leader lines, placed not to overlap) in the first."""
    from matplotlib import patheffects

    cmap, norm = rain_classes()
    fig, axes = plt.subplots(2, 5, figsize=(17, 7.6), layout="constrained")
    panels = [(f"t{-10 * (3 - k)} min" if k < 3 else "t (issue)", inputs_mm_h[k]) for k in range(4)]
    panels += [(f"+{10 * (k + 1)} min", forecast_mm_h[k]) for k in range(6)]
    shape = tuple(inputs_mm_h.shape[1:])
    outline = catchment_outline(tuple(dams), shape)
    # A panel is about 3 inches for the grid's 120 pixels: an 8-point name is about 2.3 pixels a
    # character and 5.5 pixels high there.
    labels = label_positions(dams, shape, char_px=2.3, height_px=5.5)
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
    image = None
    for k, (ax, (title, field)) in enumerate(zip(axes.flat, panels, strict=True)):
        image = ax.imshow(np.ma.masked_invalid(field), cmap=cmap, norm=norm, interpolation="nearest")
        # White lines with a black edge: seen on the navy of dry ground and on every rain colour.
        lines = ax.contour(outline, levels=[0.5], colors="white", linewidths=0.9)
        lines.set_path_effects([patheffects.withStroke(linewidth=2.2, foreground="black")])
        for dam, (x, y, ha) in zip(dams, labels, strict=True):
            r, c = dam.pixel
            ax.plot(c, r, marker="^", color="white", markeredgecolor="black", markersize=5, linestyle="")
            if k == 0:
                ax.plot([c, x], [r, y], color="black", linewidth=0.6)
                ax.text(x, y, dam.id, fontsize=8, ha=ha, va="center", path_effects=halo)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{method} forecast issued {issue_time:%Y-%m-%d %H:%M} UTC (mm/h)")
    bar = fig.colorbar(image, ax=axes, shrink=0.8, label=BAR_LABEL, extend="min", ticks=LEVELS_MM_H)
    bar.ax.set_yticklabels([f"{v:g}" for v in LEVELS_MM_H])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return Path(out)


def plot_reliability(counts: dict, out: Path, *, thresholds_mm_h: Sequence = (1.0, 5.0), min_pixels: int = 1000,
                     title: str = "", labels: dict[str, str] | None = None,
                     panel_titles: Sequence[str] | None = None) -> None:
    """Reliability diagrams, one panel per threshold, one line per method: ``counts`` maps (method,
    threshold mm/h) to :class:`~nowcast_core.verification.probabilistic.ProbCounts`. Bins with fewer than
    ``min_pixels`` pixels (or forecasts) are left out; the band is +-0.1 around the diagonal.
    ``panel_titles``: one per threshold, for events other than a pixel's rain rate (the thresholds are
    then any keys of ``counts``)."""
    methods = sorted({m for m, _ in counts})
    fig, axes = plt.subplots(1, len(thresholds_mm_h), figsize=(5 * len(thresholds_mm_h), 5.6), squeeze=False)
    titles = panel_titles or [f"rain rate >= {thr:g} mm/h, all leads" for thr in thresholds_mm_h]
    for ax, thr, panel_title in zip(axes[0], thresholds_mm_h, titles, strict=True):
        ax.set_aspect("equal")
        ax.plot([0, 1], [0, 1], color="grey", lw=1, label="perfect")
        ax.fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="grey", alpha=0.15, label="±0.1")
        for k, method in enumerate(methods):
            c = counts.get((method, thr))
            if c is None:
                continue
            bins = [b for b in c.reliability_diagram() if b["n"] >= min_pixels]
            ax.plot([b["forecast_probability"] for b in bins], [b["observed_frequency"] for b in bins],
                    "o-" if k == 0 else "s--", label=f"{(labels or {}).get(method, method)} (Brier {c.brier():.4f})")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability", ylabel="observed frequency",
               title=panel_title)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8)  # below the panel: no curve hidden
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")  # the legends below the panels included
    plt.close(fig)
