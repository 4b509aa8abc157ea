"""Verification and skill: stored counts, aggregated as sums, equal a recomputation from exports."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import numpy as np
import pytest

from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service
from nowcast_core.db.queries import export_fields
from nowcast_core.io import pixel_to_rain_rate, read_folder
from nowcast_core.verification.scores import (
    THRESHOLDS_MM_H,
    LeadCounts,
    competition_score,
    lead_counts,
    score_key,
)
from nowcast_core.verification.stored import skill_rows


def test_lead_counts_match_hand_count():
    forecast = np.array([[0.0, 2.0], [6.0, 0.5]])
    observed = np.array([[1.5, 2.0], [0.0, np.nan]])  # NaN: no data, left out
    c = lead_counts(forecast, observed)
    assert c.n_pixels == 3
    assert c.abs_error_sum == pytest.approx(1.5 + 0.0 + 6.0)
    assert c.contingency[1.0] == {"hits": 1, "misses": 1, "false_alarms": 1, "correct_negatives": 0}
    assert c.csi(1.0) == pytest.approx(1 / 3)
    assert c.contingency[5.0] == {"hits": 0, "misses": 0, "false_alarms": 1, "correct_negatives": 2}


def test_pooling_sums_counts_not_ratios():
    a = lead_counts(np.ones((2, 2)) * 2, np.ones((2, 2)) * 2)  # 4 hits at 1 mm/h
    b = lead_counts(np.zeros((2, 2)), np.ones((2, 2)) * 2)  # 4 misses
    total = LeadCounts()
    total.add(a)
    total.add(b)
    assert total.csi(1.0) == pytest.approx(4 / 8)  # a mean of ratios would give (1 + 0) / 2 too, so check MAE
    assert total.mae_mm_h == pytest.approx((0 * 4 + 2 * 4) / 8)
    assert total.n_forecasts == 2


def test_competition_score_at_dam_pixels():
    observed = np.zeros((1, 120, 120))
    forecast = np.zeros((1, 120, 120))
    pixels = [(50, 71), (52, 64)]
    observed[0, 50, 71] = 2.0
    forecast[0, 50, 71] = 1.0
    forecast[0, 52, 64] = 1.0  # false alarm
    s = competition_score(forecast, observed, pixels)
    assert s["mae_mm_h"] == pytest.approx(1.0)
    assert s["csi"] == pytest.approx(0.5)
    assert s["score"] == pytest.approx(2.0)


@pytest.fixture
def verified_service(tmp_path, db_url, shared_radar):
    settings = load_settings(home=tmp_path / "home", database_url=db_url, settle_seconds=0, method="persistence",
                             baselines=["pysteps"], ensembles=False, reference_ensemble="")  # deterministic skill only
    svc = Service(settings)
    svc.migrate()
    for path in sorted((shared_radar / "knmi-w0").glob("RDR_*.npz"))[:16]:
        shutil.copy(path, settings.inbox / path.name)
    svc.ingest()
    svc.forecast(production=True)
    svc.forecast_baselines()
    yield svc
    svc.close()


def test_skill_equals_recomputation_from_exports_and_aggregates_by_method_dam_lead_and_time(verified_service,
                                                                                            shared_radar):
    """One verified service per backend (its setup is most of the cost): stored skill equals the
    scores recomputed from the exported fields, its groupings agree, and its time filter narrows."""
    svc = verified_service
    assert svc.verify() > 0
    assert svc.verify() == 0  # idempotent
    observed = {f.scan_time: pixel_to_rain_rate(f.frame) for f in read_folder(shared_radar / "knmi-w0")}
    with svc.sessions() as session:
        rows = {(r["method"], r["lead_minutes"]): r for r in skill_rows(session, by="lead")}
        for method in ("persistence", "pysteps"):
            issue_times, fields, _ = export_fields(session, svc.settings.forecasts, method=method)
            assert len(issue_times) == 13  # 16 scans, the first three lack predecessors
            for k, lead in enumerate(range(10, 70, 10)):
                pairs = []
                for iso, field in zip(issue_times, fields, strict=True):
                    valid = np.datetime64(iso.replace("Z", "")) + np.timedelta64(lead, "m")
                    match = [t for t in observed if np.datetime64(t.replace(tzinfo=None)) == valid]
                    if match and match[0] <= max(t for t in observed if t <= sorted(observed)[15]):
                        pairs.append((field[k], observed[match[0]]))
                f = np.stack([p[0] for p in pairs]).astype(np.float64)
                o = np.stack([p[1] for p in pairs]).astype(np.float64)
                row = rows[method, lead]
                assert row["n_forecasts"] == len(pairs)
                assert row["mae_mm_h"] == pytest.approx(np.abs(f - o).mean(), abs=5e-4)
                for thr in THRESHOLDS_MM_H:
                    hits = np.sum((f >= thr) & (o >= thr))
                    union = np.sum((f >= thr) | (o >= thr))
                    expected = hits / union if union else None
                    got = row[score_key("csi", thr)]
                    if expected is None:
                        assert got is None
                    else:
                        assert got == pytest.approx(expected, abs=5e-4), (method, lead, thr, hits, union)

    # by method, by dam and by lead agree
    with svc.sessions() as session:
        by_method = skill_rows(session, by="method")
        by_dam = skill_rows(session, by="dam")
        by_lead = skill_rows(session, by="lead")
    assert {r["method"] for r in by_method} == {"persistence", "pysteps"}
    for r in by_method:
        assert r["n_forecasts"] == sum(x["n_forecasts"] for x in by_lead if x["method"] == r["method"])
    assert {r["dam"] for r in by_dam} == {f"dam-{k}" for k in range(1, 8)}
    assert all(r["mae_mm_h"] is not None and r["mae_mm_h"] >= 0 for r in by_dam)
    # persistence at +10 is better than at +60 on real rain
    lead10 = next(r for r in by_lead if r["method"] == "persistence" and r["lead_minutes"] == 10)
    lead60 = next(r for r in by_lead if r["method"] == "persistence" and r["lead_minutes"] == 60)
    assert lead10["mae_mm_h"] < lead60["mae_mm_h"]

    # a time filter narrows the pool
    with svc.sessions() as session:
        everything = skill_rows(session, by="method")
        none = skill_rows(session, by="method", since=datetime(2030, 1, 1, tzinfo=UTC))
        early = skill_rows(session, by="method", until=datetime(2010, 8, 26, 1, 0, tzinfo=UTC))
    assert none == []
    total = {r["method"]: r["n_forecasts"] for r in everything}
    assert all(r["n_forecasts"] < total[r["method"]] for r in early)
