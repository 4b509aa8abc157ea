"""The leave-one-event-out bench's criteria check (``bench/loeo.py criteria``), on hand-made rows."""

from __future__ import annotations

import pytest
from conftest import bench_module


@pytest.fixture(scope="module")
def loeo():
    return bench_module("loeo")


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


def test_a_method_the_result_did_not_score_is_not_reported_as_passing(loeo, capsys):
    loeo.print_check(_result(), ["rainnet", "rainnet-pm1"], "all")
    out = capsys.readouterr().out
    assert "## rainnet (all pixels): 4 failed" in out
    assert "## rainnet-pm1 (all pixels): not scored in this result, nothing checked" in out
    assert out.count("passes everywhere") == 4  # rainnet's four passing criteria only


def _counts(loeo, forecasts: dict, observed):
    """A fold's additive counts as ``score`` stores them, for hand-made fields (1, 6, 32, 32) mm/h."""
    import numpy as np

    pool = loeo.Pool()
    for method, forecast in forecasts.items():
        pool.add(method, forecast, observed, np.ones(observed.shape, bool))
    return pool.to_json()


def test_robustness_shows_when_a_pooled_verdict_rests_on_one_event(loeo):
    import numpy as np

    block = np.zeros((1, 6, 32, 32), np.float32)
    wet_obs = block.copy()
    wet_obs[..., 4:20, 4:20] = 6.0
    shifted = block.copy()
    shifted[..., 8:24, 8:24] = 6.0
    dry_obs = block.copy()
    dry_obs[..., 2:6, 2:6] = 6.0
    false_alarm = block.copy()
    false_alarm[..., 2:6, 2:10] = 6.0  # the 4 x 4 cell found, with as much again of false alarm
    folds = {  # the network wins clearly on the wet event and loses on the dry one
        "wet": _counts(loeo, {"rainnet": wet_obs, "conditioning": shifted, "sprog": block}, wet_obs),
        "dry": _counts(loeo, {"rainnet": false_alarm, "conditioning": dry_obs, "sprog": block}, dry_obs),
    }
    result = {"folds": {e: {"counts": c} for e, c in folds.items()}}
    rows = {(r["criterion"], r["lead_minutes"]): r for r in loeo.robustness(result, "rainnet", "all", n_boot=2000)}
    r = rows["CSI 5 > conditioning", 10]
    # pooled: network 16*16 + 16 hits, 16 false alarms over 272; input 144 + 16 hits over 368 + 16
    assert r["margin"] == pytest.approx((256 + 16) / (256 + 32) - (144 + 16) / (368 + 16), abs=1e-4)
    # one event out leaves the dry event alone, where the network's CSI 5 is 0.5 against 1
    assert r["min_margin_one_event_out"] == pytest.approx(0.5 - 1.0, abs=1e-4)
    assert r["margin_p05"] == pytest.approx(-0.5, abs=1e-4) and r["margin_p95"] > 0.4
    # resampled pairs: wet + wet and the two mixed orders pass, dry + dry fails: about 3 in 4
    assert 0.70 < r["share_holding"] < 0.80
    assert rows["MAE <= S-PROG", 10]["margin"] > 0  # a pass is > 0 for MAE too (S-PROG's minus the network's)


def test_each_folds_core_probability_is_chosen_on_the_other_folds_held_out_counts(loeo, capsys):
    """A fold's own held-out counts never choose its core probability; the model of every event's
    choice pools them all."""
    import numpy as np

    from nowcast_core.rainnet.direct import CORE_CHOICES

    def counts(best: int) -> list:
        # one threshold, one lead: CSI 0.5 at the choice ``best``, 0.25 elsewhere (hits, misses, false alarms)
        c = np.tile([1, 2, 1], (1, 1, len(CORE_CHOICES), 1))
        c[0, 0, best] = [2, 1, 1]
        return c.tolist()

    folds = {"a": counts(1), "b": counts(1), "c": counts(3)}
    result = {"folds": {e: {"held_out_core_counts": c, "config": {"exceedance_thresholds_mm_h": [5.0]}}
                        for e, c in folds.items()}}
    assert loeo.cores(result, None, None) == (CORE_CHOICES[1],)  # a and b outvote c
    out = capsys.readouterr().out
    # c's own best (choice 3) is not seen by c; a sees b and c tie between choices 1 and 3: the earlier
    for fold in "abc":
        assert f"{fold}: ({CORE_CHOICES[1]:g}) at 5 mm/h" in out
    result["folds"]["a"]["held_out_core_counts"] = counts(0)  # a, b and c now each favour another choice
    assert loeo.cores(result, None, None) == (None,)  # a three-way tie: the earliest, none, is kept
    assert "b: (none) at 5 mm/h" in capsys.readouterr().out  # a (none) and c (choice 3) tie for b
    with pytest.raises(SystemExit, match="two folds"):
        loeo.cores({"folds": {"a": result["folds"]["a"]}}, None, None)
