"""The leave-one-event-out bench's criteria check (``bench/loeo.py criteria``), on hand-made rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "loeo.py"


@pytest.fixture(scope="module")
def loeo():
    spec = importlib.util.spec_from_file_location("bench_loeo", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(method, pixels, lead, csi_1, csi_5, mae, area=None):
    row = {"method": method, "pixels": pixels, "lead_minutes": lead, "csi_1": csi_1, "csi_5": csi_5, "mae_mm_h": mae}
    if area is not None:
        row["area_ratio_5"] = area
    return row


def _result():
    rows = []
    for pixels, area in (("all", 0.4), ("upstream", None)):  # the area is measured on all pixels only
        rows += [_row("rainnet", pixels, 10, 0.70, 0.50, 0.50, area),
                 _row("sprog", pixels, 10, 0.60, 0.40, 0.60, 1.0 if area else None),
                 _row("conditioning", pixels, 10, 0.71, 0.45, 0.55, 1.0 if area else None)]
    return {"folds": {"ev": {"rows": rows}}, "pooled": rows}


def test_criteria_name_each_failure_and_skip_what_a_pixel_set_does_not_measure(loeo, capsys):
    failures = loeo.check(_result(), "rainnet", "all")
    assert [(s, lead) for s, lead, *_ in failures["area 5 >= half observed"]] == [("ev", 10), ("pooled", 10)]
    assert [(s, lead) for s, lead, *_ in failures["CSI 1 > conditioning"]] == [("ev", 10), ("pooled", 10)]
    assert failures["CSI 5 > conditioning"] == [] and failures["MAE <= S-PROG"] == []

    upstream = loeo.check(_result(), "rainnet", "upstream")
    assert upstream["area 5 >= half observed"] == []  # not measured there: no failure, and no pass either
    assert [(s, lead) for s, lead, *_ in upstream["CSI 1 > conditioning"]] == [("ev", 10), ("pooled", 10)]
    loeo.print_check_table(_result(), "rainnet", "upstream")
    ev_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| ev |"))
    assert ev_row.split(" | ")[4] == "not measured" and "**fails +10**" in ev_row
