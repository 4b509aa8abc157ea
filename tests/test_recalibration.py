"""Recalibrated exceedance probabilities (issue 11): the probability map fitted on training events."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from nowcast_core.contract import N_LEADS, THRESHOLDS_MM_H
from nowcast_core.ensembles.calibration import recalibrate
from nowcast_core.ensembles.perturbed import CentredEnsemble, Perturbations
from nowcast_core.ensembles.products import exceedance_probability
from nowcast_core.ensembles.recalibration import LevelCounts, ProbabilityMap, isotonic

SPREAD = Perturbations((1.0,) * N_LEADS, (0.3,) * N_LEADS, 6.0)


def _storm(rng: np.random.Generator, n: int, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a 20 mm/h block; observations where each pixel keeps its rain with probability ``keep``
    (the forecast is over-confident: it never shows the decay)."""
    centres = np.zeros((n, N_LEADS, 120, 120), np.float32)
    centres[:, :, 30:90, 30:90] = 20.0
    observed = np.where(rng.random(centres.shape) < keep, centres, 0.0).astype(np.float32)
    return centres, observed


def test_isotonic_pools_adjacent_violators_and_keeps_a_rising_sequence():
    np.testing.assert_allclose(isotonic(np.array([0.3, 0.1]), np.array([1.0, 1.0])), [0.2, 0.2])
    np.testing.assert_allclose(isotonic(np.array([0.0, 0.5, 0.2, 0.9]), np.array([1.0, 1.0, 3.0, 1.0])),
                               [0.0, 0.275, 0.275, 0.9])
    rising = np.array([0.0, 0.1, 0.1, 0.7])
    np.testing.assert_array_equal(isotonic(rising, np.ones(4)), rising)


def test_map_learns_the_observed_frequency_and_lowers_the_brier_score_on_new_starts():
    rng = np.random.default_rng(3)
    centres, observed = _storm(rng, 6, keep=0.6)
    mapped = recalibrate(SPREAD, centres, observed, n_members=24, seed=1)
    pm = mapped.probability_map
    assert pm is not None and pm.thresholds_mm_h == tuple(float(t) for t in THRESHOLDS_MM_H)
    j = pm.threshold_index(5.0)
    for k in range(N_LEADS):
        values = np.asarray(pm.calibrated[k][j])
        assert (np.diff(values) >= 0).all()  # monotone
        assert abs(values[-1] - 0.6) < 0.05  # all members agree -> what was observed, not 1
    # new starts of the same weather: the recalibrated probabilities score better than the raw shares
    centres2, observed2 = _storm(np.random.default_rng(4), 2, keep=0.6)
    raw_brier, mapped_brier = [], []
    for ensemble, out in ((CentredEnsemble(24, 9, "persistence", SPREAD), raw_brier),
                          (CentredEnsemble(24, 9, "persistence", mapped), mapped_brier)):
        members = ensemble.members(np.zeros((2, 4, 120, 120), np.float32), centre_mm_h=centres2)
        for i in range(2):
            prob = exceedance_probability(members[i], (1.0, 5.0), ensemble.probability_map)
            out.append(np.mean((prob - (observed2[i][:, None] >= np.array([1.0, 5.0])[:, None, None])) ** 2))
    assert np.mean(mapped_brier) < 0.9 * np.mean(raw_brier)


def test_unmapped_thresholds_stay_raw_and_steps_has_no_map():
    from nowcast_core.ensembles import get_ensemble

    counts = LevelCounts(4, (5.0,))
    members = np.zeros((4, N_LEADS, 8, 8), np.float32)
    members[:2] = 6.0  # half the members: share 0.5
    counts.add(members, np.zeros((N_LEADS, 8, 8), np.float32))  # never observed
    pm = counts.fit(prior_pixels=1.0)
    prob = exceedance_probability(members, (1.0, 5.0), pm)
    np.testing.assert_allclose(prob[:, 0], 0.5)  # 1 mm/h: not in the map
    assert (prob[:, 1] < 0.05).all()  # 5 mm/h: what was observed
    assert get_ensemble("steps").probability_map is None


def test_calibration_file_round_trips_and_a_map_changes_the_version(tmp_path):
    centres, observed = _storm(np.random.default_rng(0), 2, keep=0.5)
    mapped = recalibrate(SPREAD, centres, observed, n_members=12, seed=0)
    path = tmp_path / "cal.json"
    path.write_text(mapped.to_json())
    loaded = Perturbations.load(path)
    assert loaded == mapped and loaded.digest() == mapped.digest() != SPREAD.digest()
    assert CentredEnsemble(12, 1, "persistence", loaded).version != CentredEnsemble(12, 1, "persistence", SPREAD).version
    doc = json.loads(path.read_text())
    doc["probability_map"]["calibrated"][0][0][-1] = -0.5  # not a probability
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="not an ensemble calibration"):
        Perturbations.load(path)


def test_a_map_of_the_wrong_shape_or_falling_is_refused():
    with pytest.raises(ValueError, match="needs"):
        ProbabilityMap((5.0,), (0.0, 1.0), (((0.0, 1.0),),))
    falling = tuple(((0.5, 0.2),) for _ in range(N_LEADS))
    with pytest.raises(ValueError, match="never fall"):
        ProbabilityMap((5.0,), (0.0, 1.0), falling)


def test_the_probability_file_keeps_member_counts_and_publishes_the_mapped_probabilities(tmp_path):
    from datetime import UTC, datetime

    from nowcast_core.io.fields import load_probability, save_probability

    counts = LevelCounts(4, (5.0,))
    members = np.zeros((4, N_LEADS, 8, 8), np.float32)
    members[:3, :, :4] = 6.0  # three of four members in the left half
    observed = np.zeros((N_LEADS, 8, 8), np.float32)
    observed[:, :2] = 6.0  # half of those pixels got it
    counts.add(members, observed)
    pm = counts.fit(prior_pixels=1.0)
    share = exceedance_probability(members, (1.0, 5.0))
    published = exceedance_probability(members, (1.0, 5.0), pm)
    issue = datetime(2021, 7, 1, tzinfo=UTC)
    rel, checksum = save_probability(tmp_path, issue, "rainnet-ensemble", share, (1.0, 5.0), 4, pm)
    loaded, thresholds = load_probability(tmp_path, rel, checksum)
    np.testing.assert_allclose(loaded, published, atol=1e-6)
    assert abs(float(loaded[0, 1, 0, 0]) - 0.5) < 0.05 and float(loaded[0, 0, 0, 0]) == 0.75  # 1 mm/h raw
    rel_raw, _ = save_probability(tmp_path, issue, "steps", share, (1.0, 5.0), 4)
    np.testing.assert_array_equal(load_probability(tmp_path, rel_raw)[0], share)


def test_published_probabilities_never_rise_with_the_threshold():
    from nowcast_core.io.fields import publish

    share = np.full((N_LEADS, 2, 4, 4), 0.5, np.float32)  # half the members at 1 and at 5 mm/h
    levels = np.array([0.0, 1.0])
    table = np.empty((N_LEADS, 2, 2))
    table[:, 0] = [0.0, 0.6]  # 1 mm/h: 0.5 -> 0.3
    table[:, 1] = [0.0, 1.0]  # 5 mm/h: 0.5 -> 0.5, above the 1 mm/h value: capped to it
    np.testing.assert_allclose(publish(share, (1.0, 5.0), levels, table)[:, 1], 0.3)
    np.testing.assert_allclose(publish(share[:, ::-1], (5.0, 1.0), levels, table[:, ::-1])[:, 0], 0.3)  # any order


def test_the_recalibration_widens_the_neighbourhood_only_where_rain_is_misplaced():
    """Storms observed a few pixels off the forecast: averaging the shares over a neighbourhood scores
    better, and is chosen; storms observed where forecast: no neighbourhood."""
    rng = np.random.default_rng(5)
    centres = np.zeros((6, N_LEADS, 120, 120), np.float32)
    centres[:, :, 40:80, 40:80] = 20.0
    misplaced = np.stack([np.roll(c, tuple(rng.integers(-6, 7, 2)), axis=(1, 2)) for c in centres])
    sharp = SPREAD.__class__((0.0,) * N_LEADS, (0.0,) * N_LEADS, 6.0)  # members = the centre
    off = recalibrate(sharp, centres, misplaced, n_members=12, seed=1, neighbourhood_grid_px=(0.0, 2.0, 4.0))
    on = recalibrate(sharp, centres, centres, n_members=12, seed=1, neighbourhood_grid_px=(0.0, 2.0, 4.0))
    scores = off.provenance["recalibration"]["brier_by_neighbourhood_px"]
    assert off.probability_map.neighbourhood_px > 0 and scores["0"] > min(scores.values())
    assert on.probability_map.neighbourhood_px == 0.0
    # the published field is the neighbourhood average mapped: a pixel just outside the forecast storm
    # is no longer impossible, one deep inside it stays likely
    prob = exceedance_probability(np.repeat(centres[:1], 12, axis=0), (5.0,), off.probability_map)
    assert 0.0 < float(prob[0, 0, 60, 38]) < float(prob[0, 0, 60, 60]) and float(prob[0, 0, 60, 10]) < 0.02


def test_a_neighbourhood_map_round_trips_through_the_calibration_and_the_probability_file(tmp_path):
    from datetime import UTC, datetime

    from nowcast_core.io.fields import load_probability, save_probability

    counts = LevelCounts(4, (1.0, 5.0), neighbourhood_px=2.0)
    members = np.zeros((4, N_LEADS, 16, 16), np.float32)
    members[:3, :, 4:10, 4:10] = 6.0
    observed = np.zeros((N_LEADS, 16, 16), np.float32)
    observed[:, 6:12, 6:12] = 6.0
    counts.add(members, observed)
    pm = counts.fit(prior_pixels=1.0)
    assert pm.neighbourhood_px == 2.0 and ProbabilityMap.from_dict(json.loads(json.dumps(pm.as_dict()))) == pm
    p = Perturbations((1.0,) * N_LEADS, (0.3,) * N_LEADS, 6.0, probability_map=pm)
    (tmp_path / "cal.json").write_text(p.to_json())
    loaded = Perturbations.load(tmp_path / "cal.json")
    assert loaded.probability_map == pm and loaded.digest() == p.digest()
    assert p.digest() != Perturbations((1.0,) * N_LEADS, (0.3,) * N_LEADS, 6.0,
                                       probability_map=replace(pm, neighbourhood_px=0.0)).digest()
    share = exceedance_probability(members, (1.0, 5.0))
    published = exceedance_probability(members, (1.0, 5.0), pm)
    assert not np.allclose(published[:, 0], share[:, 0])  # 1 mm/h is smoothed though not mapped
    rel, checksum = save_probability(tmp_path, datetime(2021, 7, 1, tzinfo=UTC), "rainnet-ensemble", share,
                                     (1.0, 5.0), 4, pm)
    np.testing.assert_allclose(load_probability(tmp_path, rel, checksum)[0], published, atol=1e-6)
    with pytest.raises(ValueError, match="neighbourhood"):
        replace(pm, neighbourhood_px=-1.0)


def test_a_level_unseen_at_a_long_lead_keeps_what_the_shorter_lead_learnt():
    counts = LevelCounts(4, (5.0,))
    members = np.zeros((4, N_LEADS, 40, 40), np.float32)
    members[:, 0, :20] = 6.0  # at +10 all four members show 5 mm/h on half the pixels; later, none do
    observed = np.zeros((N_LEADS, 40, 40), np.float32)
    observed[0, :10] = 6.0  # and half of those got it
    for _ in range(3):
        counts.add(members, observed)
    values = np.asarray(counts.fit(prior_pixels=100.0).calibrated)[:, 0, -1]  # all members agree, per lead
    assert abs(values[0] - 0.5) < 0.05
    np.testing.assert_allclose(values[1:], values[0])  # not the raw share 1.0


def _events(keeps: tuple[float, ...], n_per_event: int = 2):
    """Events of the same over-confident storm forecast whose rain keeps ``keeps`` of its pixels (with
    unlike keeps, a map fitted on the others misjudges each), and STEPS shares that know each event's
    keep rate (a reference that is reliable there)."""
    rng = np.random.default_rng(11)
    centres, observed, knowing, groups = [], [], [], []
    for event, keep in zip("abc", keeps, strict=True):
        c, o = _storm(rng, n_per_event, keep)
        centres.append(c)
        observed.append(o)
        k = np.zeros((n_per_event, N_LEADS, len(THRESHOLDS_MM_H), 120, 120), np.float32)
        k[:, :, :, 30:90, 30:90] = keep  # 20 mm/h rain reaches every threshold
        knowing.append(k)
        groups += [event] * n_per_event
    return np.concatenate(centres), np.concatenate(observed), np.concatenate(knowing), groups


def test_the_map_pools_steps_only_where_it_helps_events_held_out():
    centres, observed, knowing, groups = _events((0.9, 0.4, 0.9))
    pooled = recalibrate(SPREAD, centres, observed, n_members=24, seed=1, steps_shares=knowing, steps_members=12,
                         groups=groups).probability_map
    assert min(pooled.steps_weight) >= 0.3 and pooled.steps_members == 12 and pooled.pools
    # alike events: the map alone carries over, and STEPS shares that know nothing (none rain) only hurt
    centres, observed, knowing, groups = _events((0.6, 0.6, 0.6))
    ignorant = recalibrate(SPREAD, centres, observed, n_members=24, seed=1, steps_shares=np.zeros_like(knowing),
                           steps_members=12, groups=groups)
    assert not ignorant.probability_map.pools and ignorant.probability_map.steps_members == 0
    by_weight = ignorant.provenance["recalibration"]["brier_by_steps_weight"]
    assert all(by_weight[f"{t:g}"]["0"] < by_weight[f"{t:g}"]["0.3"] for t in THRESHOLDS_MM_H)
    with pytest.raises(ValueError, match="group"):
        recalibrate(SPREAD, centres, observed, n_members=24, seed=1, steps_shares=knowing, steps_members=12,
                    groups=["a"] * len(centres))


def test_a_pooled_map_publishes_the_weighted_mixture_and_round_trips_through_its_files(tmp_path):
    from datetime import UTC, datetime

    from nowcast_core.io.fields import load_probability, save_probability

    members = np.zeros((4, N_LEADS, 16, 16), np.float32)
    members[:, :, 4:10, 4:10] = 6.0  # all four members rain 6 mm/h on a block
    steps = np.zeros((2, N_LEADS, 16, 16), np.float32)  # the STEPS members show no rain
    identity = LevelCounts(4, (1.0, 5.0)).fit(prior_pixels=1.0)  # no pixels counted: the raw share
    pm = replace(identity, steps_weight=(0.25, 0.5), steps_members=2)
    assert ProbabilityMap.from_dict(json.loads(json.dumps(pm.as_dict()))) == pm
    published = exceedance_probability(members, (1.0, 5.0), pm, steps)
    np.testing.assert_allclose(published[:, 0, 5, 5], 0.75)  # (1 - 0.25) * 1 + 0.25 * 0 at 1 mm/h
    np.testing.assert_allclose(published[:, 1, 5, 5], 0.5)  # its own weight at 5 mm/h
    np.testing.assert_allclose(published[:, :, 0, 0], 0.0)
    with pytest.raises(ValueError, match="STEPS"):
        exceedance_probability(members, (1.0, 5.0), pm)  # a pooled map without its STEPS members
    share = exceedance_probability(members, (1.0, 5.0))
    rel, checksum = save_probability(tmp_path, datetime(2021, 7, 1, tzinfo=UTC), "rainnet-ensemble", share,
                                     (1.0, 5.0), 4, pm, exceedance_probability(steps, (1.0, 5.0)))
    np.testing.assert_allclose(load_probability(tmp_path, rel, checksum)[0], published, atol=1e-6)
    with pytest.raises(ValueError, match="weight"):
        replace(pm, steps_weight=(1.0, 0.5))
    with pytest.raises(ValueError, match="weight"):
        replace(pm, steps_weight=(0.25,))  # one per threshold


def test_dam_products_pool_the_members_with_the_steps_members_by_weight():
    from nowcast_core.dams import Dam
    from nowcast_core.ensembles.products import dam_probabilities

    dam = Dam.model_validate({"id": "d", "pixel": (8, 8), "catchment": {"centre": [8, 8], "radius_px": 2}})
    centre = np.full((N_LEADS, 16, 16), 12.0, np.float32)
    members = np.full((4, N_LEADS, 16, 16), 12.0, np.float32)  # 12 mm/h: 2 mm per 10 minutes
    steps = np.zeros((2, N_LEADS, 16, 16), np.float32)
    alone = dam_probabilities(centre, members, [dam])
    pooled = dam_probabilities(centre, members, [dam], steps_members_mm_h=steps, steps_weight=0.25)
    assert alone[0]["prob_rate_ge"]["10"] == 1.0
    assert abs(pooled[0]["prob_rate_ge"]["10"] - 0.75) < 1e-9  # weighted, not 4 of 6 members
    assert pooled[-1]["accum_mm_p10"] == 0.0 and pooled[-1]["accum_mm_p50"] == pytest.approx(12.0)
    assert len(pooled[0]["accum_mm_members"]) == 4  # the production members' own values
    assert pooled[0]["steps_accum_mm_members"] == [0.0, 0.0] and pooled[0]["steps_weight"] == 0.25
    assert alone[0]["steps_accum_mm_members"] is None and alone[0]["steps_weight"] is None
