"""Figures for operators: skill against lead, forecast panels with catchments."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nowcast_core.verification.scores import score_key  # noqa: E402


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
    """The four input scans and six leads of one issue time, dam catchments outlined."""
    import numpy as np
    from matplotlib.colors import BoundaryNorm

    from nowcast_core.dams import catchment_mask

    levels = [0, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100]
    norm = BoundaryNorm(levels, ncolors=256)
    fig, axes = plt.subplots(2, 5, figsize=(17, 7))
    panels = [(f"t{-10 * (3 - k)} min" if k < 3 else "t (issue)", inputs_mm_h[k]) for k in range(4)]
    panels += [(f"+{10 * (k + 1)} min", forecast_mm_h[k]) for k in range(6)]
    outline = np.zeros(inputs_mm_h.shape[1:], dtype=float)
    for dam in dams:
        outline = np.maximum(outline, catchment_mask(dam, outline.shape))
    image = None
    for ax, (title, field) in zip(axes.flat, panels, strict=True):
        image = ax.imshow(np.nan_to_num(field), cmap="turbo", norm=norm)
        ax.contour(outline, levels=[0.5], colors="white", linewidths=0.8)
        for dam in dams:
            ax.plot(dam.pixel[1], dam.pixel[0], "k^", markersize=4)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{method} forecast issued {issue_time:%Y-%m-%d %H:%M} UTC (mm/h)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="rain rate (mm/h)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return Path(out)
