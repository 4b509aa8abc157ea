"""Markdown tables of a training report (``MODEL.report.json``) for the model card."""

from __future__ import annotations

import json
from pathlib import Path

METHODS = ("rainnet", "pysteps", "persistence")
#: Rows of :func:`skill_table`: the three methods and the model's conditioning input alone.
ALL_ROWS = METHODS + ("conditioning",)


def load_report(path: str | Path) -> dict:
    """The training report written by :func:`nowcast_core.rainnet.train.train_from_folders`."""
    return json.loads(Path(path).read_text())


def skill_table(report: dict, methods=ALL_ROWS) -> str:
    """Validation skill per lead of the final model next to the baselines, as a markdown table.

    Columns: CSI at 0.1, 1 and 5 mm/h, MAE (mm/h) and mean forecast rain rate (mm/h);
    rows: method x lead. Values come from ``report["final_validation"]``.
    """
    final = report["final_validation"]
    lines = [
        "| method | lead | CSI 0.1 | CSI 1 | CSI 5 | MAE mm/h | mean forecast mm/h | mean observed mm/h |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        for row in final.get(method, []):
            lines.append(
                f"| {method} | +{row['lead_minutes']} | {row['csi_0.1']:.3f} | {row['csi_1']:.3f} | "
                f"{row['csi_5']:.3f} | {row['mae_mm_h']:.3f} | {row['mean_forecast_mm_h']:.3f} | {row['mean_observed_mm_h']:.3f} |"
            )
    return "\n".join(lines)


def comparison_table(report: dict) -> str:
    """CSI at 1 mm/h and MAE per lead, RainNet vs pysteps vs persistence, with the best marked."""
    final = report["final_validation"]
    lines = [
        "| lead | CSI 1 rainnet | CSI 1 pysteps | CSI 1 persistence | MAE rainnet | MAE pysteps | MAE persistence |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, row in enumerate(final["rainnet"]):
        csi = [final[m][k]["csi_1"] for m in METHODS]
        mae = [final[m][k]["mae_mm_h"] for m in METHODS]
        cells = [f"**{v:.3f}**" if v == max(csi) else f"{v:.3f}" for v in csi]
        cells += [f"**{v:.3f}**" if v == min(mae) else f"{v:.3f}" for v in mae]
        lines.append(f"| +{row['lead_minutes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def epoch_table(report: dict) -> str:
    """Per-epoch training loss, validation loss and CSI 1 / MAE at +10, +30, +60."""
    lines = ["| epoch | stage | loss | val loss | CSI1/MAE +10 | +30 | +60 | s |", "|---|---|---|---|---|---|---|---|"]
    for e in report["epochs"]:
        sk = {r["lead_minutes"]: r for r in e.get("val_skill", [])}
        cells = [f"{sk[m]['csi_1']:.3f} / {sk[m]['mae_mm_h']:.3f}" if m in sk else "" for m in (10, 30, 60)]
        lines.append(
            f"| {e['epoch']} | {e['stage']} | {e['loss']:.4f} | {e.get('val_loss', float('nan')):.4f} | "
            + " | ".join(cells)
            + f" | {e['seconds']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    rep = load_report(sys.argv[1])
    print(comparison_table(rep), "\n")
    print(skill_table(rep), "\n")
    print(epoch_table(rep))
