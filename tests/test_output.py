"""Tables on a terminal: what a narrow one keeps, and says it left out."""

from __future__ import annotations

import io

from rich.console import Console

from nowcast_app.output import Format, render

ROWS = [{"issue_time": "2020-10-31T06:40:00Z", "dam": "dam-1", "lead_minutes": lead, "max_mm_h": 12.5,
         "method": "rainnet", "accum_mm": 3.25, "prob_accum_ge": {"5": 0.4, "10": 0.1, "20": 0.0, "50": 0.0}}
        for lead in (10, 20)]


def _table(width: int, priority=None) -> list[str]:
    out = io.StringIO()
    render(ROWS, Format.table, title="t", console=Console(file=out, width=width), priority=priority)
    return out.getvalue().splitlines()


def test_a_wide_terminal_shows_every_column():
    lines = _table(200)
    assert all(k in lines[2] for k in ROWS[0]) and not any("left out" in line for line in lines)


def test_a_narrow_terminal_keeps_whole_columns_by_priority_and_names_the_rest():
    lines = _table(100, priority=["issue_time", "dam", "lead_minutes", "accum_mm", "prob_accum_ge"])
    assert max(len(line) for line in lines) <= 100
    header = lines[2]
    assert [k for k in ROWS[0] if k in header] == ["issue_time", "dam", "lead_minutes", "accum_mm", "prob_accum_ge"]
    assert "2020-10-31T06:40:00Z" in lines[4] and "5:0.40 10:0.10 20:0.00 50:0.00" in lines[4]  # whole, not folded
    caption = " ".join(line.strip() for line in lines[-2:])
    assert "left out for the terminal's width: max_mm_h, method" in caption and "--format json or csv" in caption


def test_without_a_priority_the_keys_order_decides():
    header = _table(60)[2]
    assert "issue_time" in header and "dam" in header and "prob_accum_ge" not in header


def test_long_text_folds_in_its_column_instead_of_being_left_out():
    rows = [{**ROWS[0], "input_quality": "t-10 saturated: 3.1 % of covered pixels at p >= 250 (limit 2 %)"}]
    out = io.StringIO()
    render(rows, Format.table, console=Console(file=out, width=140),
           priority=["issue_time", "dam", "lead_minutes", "input_quality"])
    text = out.getvalue()
    assert "input_quality" in text and "t-10 saturated: 3.1 % of" in text and "(limit" in text  # folded, all there
    assert max(len(line) for line in text.splitlines()) <= 140


def test_a_less_important_column_never_takes_the_place_of_a_more_important_one():
    """At 80 columns prob_accum_ge (33 wide) does not fit; method (10 wide) would, but comes after it."""
    lines = _table(80, priority=["issue_time", "dam", "lead_minutes", "accum_mm", "prob_accum_ge", "method"])
    header = lines[2]
    assert "accum_mm" in header and "prob_accum_ge" not in header and "method" not in header
    caption = " ".join(line.strip() for line in lines[-3:])
    assert "prob_accum_ge" in caption and "method" in caption


def test_skill_tables_on_80_columns_keep_a_score_and_what_it_is_compared_with():
    """`nowcast skill --probabilistic` keeps the Brier score, `skill --by dam` the observed mean beside the forecast."""
    from nowcast_app.cli import _PROBABILISTIC_SKILL_PRIORITY, _SKILL_PRIORITY

    def header(rows, priority):
        out = io.StringIO()
        render(rows, Format.table, console=Console(file=out, width=80), priority=priority)
        return out.getvalue().splitlines()[1]

    probabilistic = [{"method": "pysteps-ensemble", "lead_minutes": 10, "threshold_mm_h": 5.0, "n_runs": 16,
                      "n_pixels": 230400, "brier": 0.0174, "brier_reliability": 0.0004, "brier_resolution": 0.0066,
                      "brier_uncertainty": 0.0237, "roc_area": 0.8754, "n_dam_accumulations": 112, "crps_accum_mm": 0.0428}]
    assert "brier " in header(probabilistic, _PROBABILISTIC_SKILL_PRIORITY) + " "
    assert "n_pixels" not in header(probabilistic, _PROBABILISTIC_SKILL_PRIORITY)
    by_dam = [{"method": "persistence", "dam": "dam-1", "n_forecasts": 81, "mae_mm_h": 1.039, "csi_1": None,
               "mean_forecast_mm_h": 1.3029, "mean_observed_mm_h": 1.4911}]
    shown = header(by_dam, _SKILL_PRIORITY)
    assert "mean_forecast_mm_h" in shown and "mean_observed_mm_h" in shown
