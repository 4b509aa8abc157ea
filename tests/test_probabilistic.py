"""Probabilistic nowcasts (issue 11): ensembles, their products, alert levels from probabilities,
storage by the cycle, verification counts and the queries.

Fast: synthetic scans, the persistence or pysteps centre, small ensembles; the real-scan check
after ``nowcast run --once`` is in tests/test_cli.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import helpers_frames as hf
import numpy as np
import pytest
from sqlalchemy import select

from nowcast_core.alerts import AlertRules, assess_probabilistic
from nowcast_core.contract import LEAD_MINUTES, THRESHOLDS_MM_H
from nowcast_core.dams import load_dams
from nowcast_core.db.queries import forecast_rows
from nowcast_core.db.schema import DamAlert, DamProbability, EnsembleRun, ProbabilityVerification
from nowcast_core.ensembles import get_ensemble
from nowcast_core.ensembles.perturbed import CentredEnsemble, Perturbations
from nowcast_core.ensembles.products import dam_probabilities, exceedance_probability
from nowcast_core.io.fields import load_probability
from nowcast_core.verification.probabilistic import ProbCounts, crps, rank
from nowcast_core.verification.probabilistic_stored import probabilistic_skill_rows

START = datetime(2021, 7, 1, 0, 0, tzinfo=UTC)
SPREAD = Perturbations((1.0, 2.0, 3.0, 4.0, 5.0, 6.0), (0.2, 0.3, 0.4, 0.5, 0.6, 0.7), 6.0)


def _centre(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = np.zeros((6, 120, 120), np.float32)
    field[:, 40:70, 55:85] = rng.gamma(2.0, 3.0, (6, 30, 30))
    return field


# --- ensembles and products, without a database ----------------------------------------------


def test_members_are_reproducible_for_a_seed_and_do_not_depend_on_the_batch():
    x = np.zeros((2, 4, 120, 120), np.float32)
    centre = np.stack([_centre(0), _centre(1)])
    times = [START, START + timedelta(minutes=10)]
    a = CentredEnsemble(6, 7, "persistence", SPREAD).members(x, issue_times=times, centre_mm_h=centre)
    b = CentredEnsemble(6, 7, "persistence", SPREAD).members(x[1:], issue_times=times[1:], centre_mm_h=centre[1:])
    c = CentredEnsemble(6, 8, "persistence", SPREAD).members(x, issue_times=times, centre_mm_h=centre)
    assert a.shape == (2, 6, 6, 120, 120) and a.dtype == np.float32 and (a >= 0).all()
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0, 0], a[0, 1])  # members differ


def test_steps_reference_is_reproducible(shared_radar):
    from nowcast_core.io.sequences import folder_sequences

    times, x, _ = folder_sequences(shared_radar / hf.EVENT)
    x = x[20:21]
    steps = get_ensemble("steps", n_members=2, seed=3)
    a = steps.members(x, issue_times=times[20:21])
    b = get_ensemble("steps", n_members=2, seed=3).members(x, issue_times=times[20:21])
    assert a.shape == (1, 2, 6, 120, 120) and np.isfinite(a).all() and (a >= 0).all()
    np.testing.assert_array_equal(a, b)


def test_unknown_ensemble_and_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown ensemble method 'nope'"):
        get_ensemble("nope")
    with pytest.raises(ValueError, match="at least 2 members"):
        get_ensemble("steps", n_members=1)
    with pytest.raises(ValueError, match="6 values per lead"):
        Perturbations((1.0,), (1.0,) * 6)


def test_products_are_ordered_and_in_range():
    members = CentredEnsemble(12, 1, "persistence", SPREAD).members(
        np.zeros((1, 4, 120, 120), np.float32), centre_mm_h=_centre()[None])[0]
    dams = load_dams()
    rows = dam_probabilities(_centre(), members, dams)
    assert len(rows) == len(dams) * 6
    for dam in dams:
        mine = [r for r in rows if r["dam_id"] == dam.id]
        assert [r["lead_minutes"] for r in mine] == list(LEAD_MINUTES)
        for key in ("accum_mm", "accum_mm_p10", "accum_mm_p50", "accum_mm_p90"):
            values = [r[key] for r in mine]
            assert values == sorted(values), key  # accumulations grow with lead
        for r in mine:
            assert r["accum_mm_p10"] <= r["accum_mm_p50"] <= r["accum_mm_p90"]
            for probs in (r["prob_accum_ge"], r["prob_rate_ge"]):
                p = list(probs.values())
                assert all(0 <= v <= 1 for v in p) and p == sorted(p, reverse=True)
            assert list(r["prob_accum_ge"]) == ["5", "10", "20", "50"] and list(r["prob_rate_ge"]) == ["1", "5", "10"]
    assert max(r["accum_mm_p90"] for r in rows) > 1.0  # the rain over dam-1 is seen
    prob = exceedance_probability(members)
    assert prob.shape == (6, len(THRESHOLDS_MM_H), 120, 120) and prob.dtype == np.float32
    assert (np.diff(prob, axis=1) <= 0).all() and prob.min() >= 0 and prob.max() <= 1


def test_the_published_range_is_the_calibrated_member_quantiles_and_the_alert_quotes_it(tmp_path):
    """With range levels (chosen on held-out events) the dam depth's 10 .. 90 % range is the members'
    quantiles at those levels; the median stays the members'; the alert's reason quotes what was published."""
    from dataclasses import replace

    from nowcast_core.ensembles.products import member_quantile

    members = CentredEnsemble(12, 1, "persistence", SPREAD).members(
        np.zeros((1, 4, 120, 120), np.float32), centre_mm_h=_centre()[None])[0]
    dams = load_dams()
    levels = ((0.2, 0.95),) * 6
    plain = dam_probabilities(_centre(), members, dams)
    rows = dam_probabilities(_centre(), members, dams, range_levels=levels)
    wet = max(rows, key=lambda r: r["accum_mm_p90"])
    assert wet["lead_minutes"] == 60 and wet["accum_mm_p90"] > wet["accum_mm_p10"] > 0
    own = np.asarray(wet["accum_mm_members"])
    assert wet["accum_mm_p10"] == pytest.approx(float(member_quantile(own, 0.2)), rel=1e-4, abs=1e-3)
    assert wet["accum_mm_p90"] == pytest.approx(float(member_quantile(own, 0.95)), rel=1e-4, abs=1e-3)
    same = next(r for r in plain if (r["dam_id"], r["lead_minutes"]) == (wet["dam_id"], 60))
    assert same["accum_mm_p10"] < wet["accum_mm_p10"] and same["accum_mm_p90"] < wet["accum_mm_p90"]
    assert same["accum_mm_p50"] == wet["accum_mm_p50"]
    # levels that differ per lead still give a range that never falls as the depth accumulates
    varied = dam_probabilities(_centre(), members, dams, range_levels=((0.25, 0.97),) * 3 + ((0.15, 0.91),) * 3)
    for dam in dams:
        for key in ("accum_mm_p10", "accum_mm_p90"):
            values = [r[key] for r in varied if r["dam_id"] == dam.id]
            assert values == sorted(values), (dam.id, key)
    published = (wet["accum_mm_p10"], wet["accum_mm_p50"], wet["accum_mm_p90"])
    a = assess_probabilistic(0.0, wet["accum_mm"], wet["accum_mm_members"], AlertRules(), 0.5, "test",
                             published_range_mm=published)
    assert f"10-90 % {published[0]:.1f}-{published[2]:.1f} mm" in a.reason
    # the levels are part of the calibration (its digest, so the ensemble's version) and are checked
    calibrated = replace(SPREAD, dam_range_levels=levels)
    assert calibrated.digest() != SPREAD.digest()
    (tmp_path / "cal.json").write_text(calibrated.to_json())
    assert Perturbations.load(tmp_path / "cal.json").dam_range_levels == levels
    for bad in (((0.6, 0.9),) * 6, ((0.1, 0.9),) * 5):
        with pytest.raises(ValueError, match="dam range levels"):
            replace(SPREAD, dam_range_levels=bad)


def test_probabilistic_alert_levels_from_members():
    rules = AlertRules()
    emergency = assess_probabilistic(0.0, 70.0, [80.0] * 6 + [10.0] * 4, rules, 0.5, "test")
    assert emergency.level == "emergency" and emergency.probability == pytest.approx(0.6)
    assert "probability 0.60 >= 0.5" in emergency.reason and "10 members" in emergency.reason
    assert assess_probabilistic(0.0, 70.0, [80.0] * 6 + [10.0] * 4, rules, 0.7).level == "none"
    advisory = assess_probabilistic(30.0, 20.0, [35.0] * 5 + [5.0] * 5, rules, 0.5)  # 3 h 65 mm for half
    assert advisory.level == "advisory" and advisory.probability == pytest.approx(0.5)


def test_a_pooled_alert_weighs_its_members_as_the_published_dam_products_do():
    rules = AlertRules()
    own, steps = [80.0] * 4, [10.0] * 4  # every own member reaches emergency, no STEPS member does
    assert assess_probabilistic(0.0, 70.0, own, rules, 0.5).probability == pytest.approx(1.0)
    light = assess_probabilistic(0.0, 70.0, own, rules, 0.5, "test", steps, 0.6)
    assert light.level == "none" and light.probability == pytest.approx(0.4)  # 0.4 of advisory, too
    assert "0.40 of emergency" in light.reason and "both below the alert probability 0.5" in light.reason
    assert "4 members pooled with 4 STEPS members at weight 0.6" in light.reason
    heavy = assess_probabilistic(0.0, 70.0, own, rules, 0.5, "test", steps, 0.25)
    assert heavy.level == "emergency" and heavy.probability == pytest.approx(0.75)
    # the same share the dam products publish for the same members (a 1-hour depth of 80 or 10 mm)
    from nowcast_core.dams import Dam

    dam = Dam.model_validate({"id": "d", "pixel": (8, 8), "catchment": {"centre": [8, 8], "radius_px": 2},
                              "accum_thresholds_mm": [72]})
    members = np.full((4, 6, 16, 16), 80.0, np.float32)
    steps_fields = np.full((4, 6, 16, 16), 10.0, np.float32)
    row = dam_probabilities(members[0], members, [dam], steps_members_mm_h=steps_fields, steps_weight=0.25)[-1]
    assert row["lead_minutes"] == 60 and row["prob_accum_ge"]["72"] == pytest.approx(heavy.probability)
    again = assess_probabilistic(0.0, row["accum_mm"], row["accum_mm_members"], rules, 0.5, "test",
                                 row["steps_accum_mm_members"], row["steps_weight"])
    assert again.probability == pytest.approx(row["prob_accum_ge"]["72"])


def test_probability_counts_score_as_pysteps_and_add_up():
    from pysteps.verification import probscores

    rng = np.random.default_rng(0)
    p = np.round(rng.random((60, 60)) * 12) / 12
    obs = np.where(rng.random((60, 60)) < p, 3.0, 0.0)
    obs[0, :5] = np.nan  # no data: left out
    whole = ProbCounts.of(p, obs, 1.0)
    halves = ProbCounts.of(p[:30], obs[:30], 1.0).add(ProbCounts.of(p[30:], obs[30:], 1.0))
    w, h = whole.as_dict(), halves.as_dict()
    assert (w["n"], w["bin_n"], w["bin_events"]) == (h["n"], h["bin_n"], h["bin_events"])
    assert w["brier_sum"] == pytest.approx(h["brier_sum"]) and w["bin_prob_sum"] == pytest.approx(h["bin_prob_sum"])
    valid = np.isfinite(obs)
    assert whole.brier() == pytest.approx(np.mean((p[valid] - (obs[valid] >= 1)) ** 2))
    d = whole.decomposition()
    assert whole.brier() == pytest.approx(d["brier_reliability"] - d["brier_resolution"] + d["brier_uncertainty"],
                                          abs=2e-3)
    roc = probscores.ROC_curve_init(1.0, 10)
    roc["prob_thrs"] = np.arange(10) / 10  # the thresholds the bins resolve exactly
    probscores.ROC_curve_accum(roc, p[valid], obs[valid])
    assert whole.roc_area() == pytest.approx(probscores.ROC_curve_compute(roc, compute_area=True)[2], abs=1e-9)
    assert crps([1.0, 2.0, 3.0], 2.0) == pytest.approx(probscores.CRPS(np.array([[1.0], [2.0], [3.0]]), np.array([2.0])))
    assert rank([1.0, 2.0, 3.0], 2.5) == 2 and rank([1.0, 2.0, 3.0], 0.0) == 0


# --- the cycle: a synthetic storm heading for a dam, or missing it ------------------------------

STORM_PIXEL = 240  # about 111 mm/h
STORM_RADIUS_PX = 25
SPEED_PX = 5  # per 10 minutes, eastwards


def _storm_frame(row: float, col: float) -> np.ndarray:
    rows, cols = np.indices(hf.GRID)
    frame = np.zeros(hf.GRID, np.uint8)
    frame[(rows - row) ** 2 + (cols - col) ** 2 <= STORM_RADIUS_PX**2] = STORM_PIXEL
    return frame


def _storm_cycle(make_service, row: float, n_after: int = 0):
    """Scans t0..t3 of a storm moving east whose centre is 31 px west of dam-1's column at t3, on ``row``."""
    svc = make_service(method="pysteps", ensemble_members=12)
    for k in range(4 + n_after):
        hf.write_scan(svc.settings.inbox, START + hf.minutes(k), _storm_frame(row, 40 - SPEED_PX * (3 - k)))
    svc.ingest()
    svc.forecast(production=True)
    return svc


def _alert(svc, dam: str = "dam-1") -> DamAlert:
    with svc.sessions() as s:
        return s.scalar(select(DamAlert).where(DamAlert.dam_id == dam, DamAlert.issue_time == START + hf.minutes(3)))


def test_a_storm_heading_for_a_dam_raises_its_alert_level(make_service):
    svc = _storm_cycle(make_service, row=50)  # dam-1 is at (50, 71)
    a = _alert(svc)
    assert a.level in ("advisory", "emergency"), a.reason
    assert a.probability >= 0.5 and "probability" in a.reason and "pysteps-ensemble" in a.reason
    with svc.sessions() as s:
        ens = s.scalar(select(EnsembleRun).where(EnsembleRun.is_production))
        assert ens.method == "pysteps-ensemble" and ens.n_members == 12 and ens.run_id is not None
        prob, thresholds = load_probability(svc.settings.forecasts, ens.probability_path, ens.probability_checksum)
        assert prob.shape == (6, 4, 120, 120) and list(thresholds) == list(THRESHOLDS_MM_H)
        row = s.scalar(select(DamProbability).where(DamProbability.ensemble_id == ens.id,
                                                    DamProbability.dam_id == "dam-1", DamProbability.lead_minutes == 60))
        assert row.prob_accum_ge["20"] >= 0.5 and row.accum_mm_p90 > 20


def test_the_same_storm_missing_the_catchment_does_not(make_service):
    svc = _storm_cycle(make_service, row=5)  # 45 px north of dam-1: passes beside every catchment
    a = _alert(svc)
    assert a.level == "none" and a.probability < 0.5, a.reason
    with svc.sessions() as s:
        assert {x.level for x in s.scalars(select(DamAlert))} == {"none"}


def test_ensembles_are_verified_as_counts_and_skill_aggregates(make_service):
    svc = make_service(method="pysteps", ensemble_members=6, reference_ensemble="steps", reference_members=2,
                       reference_max_per_cycle=2)
    for k in range(10):  # t3 and t4 have all six observed leads
        hf.write_scan(svc.settings.inbox, START + hf.minutes(k), _storm_frame(50, 30 + SPEED_PX * k))
    svc.ingest()
    svc.forecast(production=True)
    svc.forecast_baselines()
    svc.verify()
    with svc.sessions() as s:
        methods = {e.method for e in s.scalars(select(EnsembleRun))}
        assert methods == {"pysteps-ensemble", "steps"}
        assert s.scalar(select(ProbabilityVerification).limit(1)) is not None
        by_lead = probabilistic_skill_rows(s, by="lead")
        by_dam = probabilistic_skill_rows(s, by="dam")
        rows = forecast_rows(s, since=START)
    production = [r for r in by_lead if r["method"] == "pysteps-ensemble" and r["threshold_mm_h"] == 1.0]
    assert [r["lead_minutes"] for r in production] == list(LEAD_MINUTES)
    for r in production:
        assert 0 <= r["brier"] <= 1 and r["n_pixels"] > 0 and len(r["reliability_diagram"]) == 10
        assert sum(r["rank_histogram"]) == r["n_dam_accumulations"] > 0
    assert {r["method"] for r in by_dam} >= {"pysteps-ensemble"}
    assert all(r["crps_accum_mm"] >= 0 for r in by_dam)
    assert rows and all(r["accum_mm_p50"] is not None and r["ensemble"] == "pysteps-ensemble" for r in rows)


def test_a_pooled_map_runs_its_steps_once_and_stores_it_as_the_reference(make_service, tmp_path):
    from dataclasses import replace

    shipped = Perturbations.load()
    weights = (0.3,) * len(shipped.probability_map.thresholds_mm_h)
    pooled_map = replace(shipped.probability_map, steps_weight=weights, steps_members=3)
    (tmp_path / "cal.json").write_text(replace(shipped, probability_map=pooled_map).to_json())
    svc = make_service(method="pysteps", ensemble_members=6, ensemble_calibration=tmp_path / "cal.json",
                       reference_ensemble="steps", reference_members=3, reference_max_per_cycle=0)
    for k in range(6):
        hf.write_scan(svc.settings.inbox, START + hf.minutes(k), _storm_frame(50, 30 + SPEED_PX * k))
    svc.ingest()
    svc.forecast(production=True)
    with svc.sessions() as s:
        runs = list(s.scalars(select(EnsembleRun)))
    production = {r.issue_time: r for r in runs if r.is_production}
    reference = {r.issue_time: r for r in runs if r.method == "steps"}
    assert production and set(reference) == set(production)  # every issue time, though none was run for it
    root = svc.settings.forecasts
    for t, run in production.items():
        with np.load(root / run.probability_path) as own, np.load(root / reference[t].probability_path) as ref:
            np.testing.assert_array_equal(own["map_steps_weight"], 0.3)
            np.testing.assert_array_equal(own["steps_member_counts"], ref["member_counts"])  # the same members
        published = load_probability(root, run.probability_path, run.probability_checksum)[0]
        steps = load_probability(root, reference[t].probability_path)[0]
        assert (published >= 0.3 * steps - 1e-6).all() and (published <= 0.7 + 0.3 * steps + 1e-6).all()
    svc.update_alerts()
    with svc.sessions() as s:
        dams = list(s.scalars(select(DamProbability).join(EnsembleRun).where(EnsembleRun.is_production)))
        alerts = list(s.scalars(select(DamAlert)))
    assert dams and all(d.steps_weight == pytest.approx(0.3) and len(d.steps_accum_mm_members) == 3 for d in dams)
    assert alerts and all("6 members pooled with 3 STEPS members at weight 0.3" in a.reason for a in alerts)


def test_predict_probabilistic_writes_exceedance_probabilities(tmp_path, shared_radar, monkeypatch):
    import shutil

    from typer.testing import CliRunner

    from nowcast_app.cli import app

    folder = tmp_path / "scans"
    folder.mkdir()
    for f in hf.event_files(shared_radar, 20, 5):
        shutil.copy(f, folder / f.name)
    monkeypatch.setenv("NOWCAST_HOME", str(tmp_path / "home"))
    out = tmp_path / "f.npz"
    args = ["predict", str(folder), "--method", "persistence", "--probabilistic", "--members", "4", "--seed", "1",
            "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as npz:
        assert list(npz["thresholds_mm_h"]) == list(THRESHOLDS_MM_H)
        prob, rain = npz["exceedance_probability"], npz["rain_rate_mm_h"]
    assert prob.dtype == np.float32 and prob.shape == (2, 6, 4, 120, 120) and rain.shape == (2, 6, 120, 120)
    assert prob.min() >= 0 and prob.max() <= 1 and (np.diff(prob, axis=2) <= 0).all()
    assert prob[:, :, 1].max() > 0.9  # the event is wet at 1 mm/h (the shipped probability map publishes the share)
    again = tmp_path / "g.npz"
    assert CliRunner().invoke(app, args[:-1] + [str(again)]).exit_code == 0
    with np.load(again, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["exceedance_probability"], prob)  # the same seed, the same answer
    bad = CliRunner().invoke(app, [a if a != "4" else "1" for a in args])  # --members 1
    assert bad.exit_code == 2  # one member is no ensemble: a usage error


def test_probability_matching_takes_the_newest_scans_distribution_and_keeps_the_ranks():
    from nowcast_core.ensembles.perturbed import matched, perturb

    rng = np.random.default_rng(5)
    centre = np.repeat(rng.random((1, 30, 30)).astype(np.float32) + 0.1, 6, axis=0)  # smooth, all wet
    newest = (rng.gamma(1.0, 5.0, (30, 30)) + 0.2).astype(np.float32)  # heavier rain
    m = matched(centre, newest)
    np.testing.assert_allclose(np.sort(m[0].ravel()), np.sort(newest.ravel()), rtol=1e-6)
    assert (np.argsort(m[0].ravel(), kind="stable") == np.argsort(centre[0].ravel(), kind="stable")).all()
    p = Perturbations((0.0,) * 6, (0.0,) * 6, match_cdf=True)
    with pytest.raises(ValueError, match="newest_scan_mm_h"):
        perturb(centre, 2, rng, p)
    np.testing.assert_allclose(perturb(centre, 2, rng, p, newest)[1], m, rtol=1e-6)
    np.testing.assert_allclose(matched(centre, np.zeros_like(newest)), centre)  # no distribution to match


def test_accumulation_thresholds_come_from_the_dams_file(tmp_path):
    good = tmp_path / "dams.json"
    good.write_text('[{"id": "a", "pixel": [50, 60], "catchment": {"centre": [50, 60], "radius_px": 4}, '
                    '"accum_thresholds_mm": [2, 30]}]')
    dams = load_dams(good)
    members = np.full((4, 6, 120, 120), 12.0, np.float32)  # 2 mm per 10 minutes
    rows = dam_probabilities(members[0], members, dams)
    assert [r["prob_accum_ge"] for r in rows] == [{"2": 1.0, "30": 0.0}] * 6
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "a", "pixel": [50, 60], "catchment": {"centre": [50, 60], "radius_px": 4}, '
                   '"accum_thresholds_mm": [30, 2]}]')
    with pytest.raises(ValueError, match="accum_thresholds_mm.*increasing"):
        load_dams(bad)


def test_range_levels_are_chosen_on_the_other_folds_and_their_coverage_is_the_held_out_folds():
    """The bench's range levels: an observation above every member counts above any level; a fold's
    coverage uses levels from the other folds only."""
    from conftest import bench_module

    bench = bench_module("probabilistic_skill")
    low_folds = {e: {"dam_ranges": {f"production|{lead}|pit": [0.05 * i for i in range(20)]
                                    for lead in (10, 20, 30, 40, 50, 60)}} for e in ("a", "b")}
    high = {"dam_ranges": {f"production|{lead}|pit": [1.0] * 20 for lead in (10, 20, 30, 40, 50, 60)}}
    levels = bench.range_levels({**low_folds, "c": high})[60]
    # below 0.1: 0 and 0.05 of a and of b; above 0.9: 0.95 of a and of b, and all of c
    assert levels["n"] == 60 and levels["as_published"] == [pytest.approx(4 / 60, abs=1e-3), pytest.approx(22 / 60, abs=1e-3)]
    # c, judged by levels from a and b (0.1 .. 0.855), lies above them all; a and b, judged with c, mostly inside
    below, inside, above = levels["nested_coverage"]
    assert above == pytest.approx(20 / 60, abs=1e-3) and below + inside + above == pytest.approx(1.0, abs=1e-3)
    assert bench.range_levels(low_folds)[60]["nested_coverage"][1] == pytest.approx(0.75, abs=0.06)
