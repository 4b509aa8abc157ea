"""Figures for operators: skill against lead, forecast panels with catchments."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_skill(rows: Sequence[dict], out: Path, threshold: str = "1") -> Path:
    """CSI (at ``threshold`` mm/h and 0.1) and MAE against lead, one line per method."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for method in sorted({r["method"] for r in rows}):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["lead_minutes"])
        leads = [r["lead_minutes"] for r in mine]
        axes[0].plot(leads, [r["csi"].get("0.1") for r in mine], marker="o", label=method)
        axes[1].plot(leads, [r["csi"].get(threshold) for r in mine], marker="o", label=method)
        axes[2].plot(leads, [r["mae_mm_h"] for r in mine], marker="o", label=method)
    for ax, title in zip(axes, ("CSI at 0.1 mm/h", f"CSI at {threshold} mm/h", "MAE (mm/h)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("lead (minutes)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return Path(out)
