"""The dam products' scores in ``bench/probabilistic_skill.py``, on hand-made rows and fields."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import bench_module

from nowcast_core.dams import catchment_mask, load_dams


@pytest.fixture(scope="module")
def bench():
    return bench_module("probabilistic_skill")


def _rows(dams, p_rate_5: float, p_depth_5: float) -> list[dict]:
    return [{"dam_id": d.id, "lead_minutes": lead, "prob_rate_ge": {"5": p_rate_5},
             "prob_accum_ge": {"5": p_depth_5}} for d in dams for lead in range(10, 70, 10)]


def test_dam_products_are_scored_against_the_catchment_means_of_the_observed_scans(bench):
    dams = load_dams()[:2]
    observed = np.zeros((6, 120, 120), np.float32)
    observed[:, catchment_mask(dams[0], (120, 120)) > 0] = 6.0  # dam 1: 6 mm/h all hour (6 mm); dam 2: dry
    counts: dict = {}
    bench.add_dam_counts(counts, "production", _rows(dams, 0.8, 0.7), observed, dams)
    scores = bench.dam_scores(counts)
    rate = scores["production|rate|5|10"]
    assert rate["n"] == 2 and rate["events"] == 1
    assert rate["brier"] == pytest.approx(((0.8 - 1) ** 2 + 0.8 ** 2) / 2)
    assert rate["brier_skill"] == pytest.approx(1 - rate["brier"] / 0.25, abs=1e-4)
    depth = scores["production|depth_1h|5|60"]  # the hour's depth is scored at +60 only
    assert depth["n"] == 2 and depth["events"] == 1 and "production|depth_1h|5|10" not in scores
    assert depth["brier"] == pytest.approx(((0.7 - 1) ** 2 + 0.7 ** 2) / 2)
    bins = {b["bin"]: b for b in depth["reliability"] if b["n"]}
    assert bins == {7: {"bin": 7, "n": 2, "forecast_probability": 0.7, "observed_frequency": 0.5}}


def test_no_event_gives_no_skill_rather_than_a_number(bench):
    dams = load_dams()[:1]
    counts: dict = {}
    bench.add_dam_counts(counts, "steps", _rows(dams, 0.1, 0.0), np.zeros((6, 120, 120), np.float32), dams)
    assert bench.dam_scores(counts)["steps|rate|5|30"]["brier_skill"] is None
