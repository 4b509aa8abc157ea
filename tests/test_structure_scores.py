"""Structure scores (FSS, area at 5 mm/h): values on constructed fields and exact pooling."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_core.verification.structure import (
    FSS_SIZES_KM,
    FSS_THRESHOLDS_MM_H,
    StructureSums,
    fss_key,
    structure_per_lead,
    structure_sums,
)


def _blob(row: float, col: float, peak_mm_h: float = 10.0, sigma_px: float = 4.0, shape=(120, 120)) -> np.ndarray:
    r, c = np.mgrid[:shape[0], :shape[1]]
    return (peak_mm_h * np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * sigma_px ** 2))).astype(np.float32)


def test_keys_in_the_one_scheme():
    row = structure_sums(_blob(60, 60), _blob(60, 60)).summary()
    assert set(row) == {fss_key(t, s) for t in FSS_THRESHOLDS_MM_H for s in FSS_SIZES_KM} | {
        "area_5_forecast_px", "area_5_observed_px", "area_ratio_5"}
    assert "fss_1_5km" in row and "fss_5_15km" in row


def test_fss_of_a_perfect_forecast_is_one():
    obs = _blob(60, 60) + _blob(30, 90, peak_mm_h=3.0)
    obs[:10, :] = np.nan  # no data: left out, still perfect
    row = structure_sums(obs.copy(), obs).summary()
    for t in FSS_THRESHOLDS_MM_H:
        for s in FSS_SIZES_KM:
            assert row[fss_key(t, s)] == pytest.approx(1.0)
    assert row["area_ratio_5"] == pytest.approx(1.0)


def test_fss_of_a_displaced_blob_rises_with_the_neighbourhood():
    obs, fcst = _blob(60, 60), _blob(60, 66)  # 6 km to the east
    row = structure_sums(fcst, obs).summary()
    for t in FSS_THRESHOLDS_MM_H:
        values = [row[fss_key(t, s)] for s in FSS_SIZES_KM]
        assert values[0] < values[1] < values[2] < 1.0, (t, values)
        assert values[0] >= 0.0


def test_fss_agrees_with_pysteps_away_from_the_edges():
    from pysteps.verification.spatialscores import fss

    obs, fcst = _blob(60, 60), _blob(55, 68, peak_mm_h=7.0, sigma_px=6.0)
    row = structure_sums(fcst, obs).summary()
    for t in FSS_THRESHOLDS_MM_H:
        for s in FSS_SIZES_KM:
            # pysteps thresholds with >= for FSS; no rain near the edges, so its zero padding and
            # our valid-pixel fractions agree.
            assert row[fss_key(t, s)] == pytest.approx(fss(fcst, obs, t, s), abs=1e-9)


def test_no_rain_anywhere_has_no_fss_and_no_ratio():
    zero = np.zeros((120, 120), np.float32)
    row = structure_sums(zero, zero).summary()
    assert row["fss_1_5km"] is None and row["area_ratio_5"] is None
    assert row["area_5_forecast_px"] == row["area_5_observed_px"] == 0


def test_area_ratio_on_a_constructed_case():
    obs = np.zeros((120, 120), np.float32)
    fcst = np.zeros_like(obs)
    obs[10:30, 10:30] = 6.0  # 400 px at >= 5 mm/h
    obs[50:60, 50:60] = 4.9  # below the threshold: not counted
    fcst[10:20, 10:30] = 5.0  # 200 px, exactly at the threshold: counted (>=)
    fcst[90:100, 90:95] = 20.0  # 50 px
    obs[0, :] = np.nan  # no observation: forecast rain there is not counted
    fcst[0, :] = 50.0
    row = structure_sums(fcst, obs).summary()
    assert row["area_5_forecast_px"] == 250
    assert row["area_5_observed_px"] == 400
    assert row["area_ratio_5"] == pytest.approx(250 / 400)


def test_pooled_sums_equal_the_scores_of_the_concatenation():
    obs_a, fcst_a = _blob(60, 40), _blob(63, 47, peak_mm_h=8.0)
    obs_b, fcst_b = _blob(50, 70, sigma_px=6.0), _blob(40, 75, peak_mm_h=12.0, sigma_px=3.0)
    obs_b[:5] = np.nan
    pooled = StructureSums()
    pooled.add(structure_sums(fcst_a, obs_a))
    pooled.add(structure_sums(fcst_b, obs_b))
    # The two fields side by side, separated by a no-data strip wider than the largest window:
    # no neighbourhood spans both, so the concatenation is scored as the pool of the two.
    gap = np.full((120, max(FSS_SIZES_KM) + 1), np.nan, np.float32)
    joined = structure_sums(np.hstack([fcst_a, gap, fcst_b]), np.hstack([obs_a, gap, obs_b]))
    got, want = pooled.summary(), joined.summary()
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    assert pooled.n_forecasts == 2
    # and the pool is not the mean of the two FSS values (it weights by the sums)
    a, b = structure_sums(fcst_a, obs_a).summary(), structure_sums(fcst_b, obs_b).summary()
    assert got["fss_5_5km"] != pytest.approx((a["fss_5_5km"] + b["fss_5_5km"]) / 2, rel=1e-6)


def test_per_lead_pools_over_issue_times():
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.5, 4.0, size=(3, 2, 40, 40)).astype(np.float32)
    fcst = rng.gamma(0.5, 4.0, size=(3, 2, 40, 40)).astype(np.float32)
    per_lead = structure_per_lead(fcst, obs, [10, 20])
    assert list(per_lead) == [10, 20]
    want = StructureSums()
    for i in range(3):
        want.add(structure_sums(fcst[i, 1], obs[i, 1]))
    assert per_lead[20].summary() == want.summary()
    assert per_lead[20].n_forecasts == 3


def test_evaluate_folders_reports_the_structure_scores(tmp_path):
    from nowcast_core.contract import LEAD_MINUTES
    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sample import write_sequence
    from nowcast_core.io.sequences import folder_sequences
    from nowcast_core.models.evaluation import evaluate_folders
    from nowcast_core.verification.scores import counts_per_lead

    folders = [tmp_path / "a", tmp_path / "b"]
    write_sequence(folders[0], n_scans=11, seed=1)  # 2 starts
    write_sequence(folders[1], n_scans=12, seed=2)  # 3 starts
    persistence = get_method("persistence")
    rows = evaluate_folders(folders, [persistence], [(60, 60)])
    assert [r["lead_minutes"] for r in rows] == list(LEAD_MINUTES)

    # the pool over both folders is the pool of the concatenated starts
    inputs, observed = zip(*[folder_sequences(f, 6)[1:] for f in folders], strict=True)
    inputs, observed = np.concatenate(inputs), np.concatenate(observed)
    forecast = persistence.forecast(inputs)
    sums = structure_per_lead(forecast, observed, LEAD_MINUTES)
    counts = counts_per_lead(forecast, observed, LEAD_MINUTES)
    for row in rows:
        lead = row["lead_minutes"]
        assert row["n_forecasts"] == 5
        for key, value in sums[lead].summary(digits=4).items():
            assert row[key] == value, (lead, key)
        # the areas are the 5 mm/h contingency table's margins
        table = counts[lead].contingency[5.0]
        assert row["area_5_forecast_px"] == table["hits"] + table["false_alarms"]
        assert row["area_5_observed_px"] == table["hits"] + table["misses"]
    # persistence keeps the newest scan's rain: some heavy rain, and a finite FSS
    assert rows[0]["area_5_observed_px"] > 0 and rows[0]["fss_1_5km"] is not None
