"""The direct RainNet (issue 10): six leads at once with exceedance heads, its decisions, loss and training."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

RADAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "radar"


def _inputs(n: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.normal(-2.0, 2.0, (n, 128, 128, 4)).astype(np.float32)
    conditioning = rng.normal(-1.0, 2.0, (n, 128, 128, 6)).astype(np.float32)
    return frames, conditioning


def test_the_untrained_network_returns_its_conditioning_and_its_distance_to_each_threshold():
    from nowcast_core.rainnet.model import build_direct_rainnet

    model = build_direct_rainnet(4, 6, (1.0, 5.0), logit_softness=0.5)
    frames, cond = _inputs()
    y = np.asarray(model([frames, cond], training=False))
    assert y.shape == (2, 128, 128, 18)
    np.testing.assert_allclose(y[..., :6], cond, atol=1e-6)  # rate corrections start at zero
    for i, thr in enumerate((1.0, 5.0)):
        expected = (cond - math.log(thr + 0.01)) / 0.5
        np.testing.assert_allclose(y[..., 6 * (i + 1) : 6 * (i + 2)], expected, rtol=1e-5, atol=1e-4)


def test_the_growth_tendency_is_how_fast_the_rain_grew_carried_forward():
    """No growth for an unchanging storm or a dry scan; a newest scan three times as strong grows by about
    ln((1 + 3 R) / (1 + R)) where it rains (smoothed over 3 px)."""
    if not RADAR.is_dir():
        pytest.skip(f"real radar data not found at {RADAR}")
    from nowcast_core.extrapolation import apply_growth, growth_tendency
    from nowcast_core.io.sequences import folder_sequences

    _, inputs, _ = folder_sequences(RADAR / "mch-20170131-w0", 6)
    steady = np.repeat(inputs[10][-1:], 4, axis=0)
    assert np.abs(growth_tendency(steady)).max() == 0.0
    assert np.abs(growth_tendency(np.zeros_like(steady))).max() == 0.0
    growing = steady.copy()
    growing[-1] *= 3
    growth = growth_tendency(growing)
    assert growth.shape == (6, 120, 120)
    wet = steady[-1] > 1
    expected = np.log((1 + 3 * steady[-1][wet]) / (1 + steady[-1][wet])).mean()
    assert 0.8 * expected < growth[0][wet].mean() <= expected
    np.testing.assert_allclose(apply_growth(np.full((1, 1), 2.0), np.full((1, 1), np.log(2.0)), 1.0), [[5.0]])
    assert apply_growth(np.full((1, 1), 2.0), np.full((1, 1), -10.0), 1.0)[0, 0] == 0.0


def test_extrapolation_and_growth_from_one_motion_field_are_those_computed_apart():
    """The conditioning of a growth network, from one motion field per sequence, is the extrapolation and
    the growth tendency each computed on its own; a dry sequence gives zeros."""
    if not RADAR.is_dir():
        pytest.skip(f"real radar data not found at {RADAR}")
    from nowcast_core.extrapolation import extrapolate_batch, extrapolate_with_growth, growth_tendency
    from nowcast_core.io.sequences import folder_sequences

    _, inputs, _ = folder_sequences(RADAR / "knmi-w0")
    batch = np.concatenate([inputs[10:14], np.zeros_like(inputs[:1])])
    extrapolation, growth = extrapolate_with_growth(batch, 6, 2.0)
    np.testing.assert_array_equal(extrapolation, extrapolate_batch(batch, 6, 2.0))
    np.testing.assert_array_equal(growth, np.stack([growth_tendency(seq, 6) for seq in batch]))
    assert np.abs(growth[:4]).max() > 0 and not growth[4].any() and not extrapolation[4].any()
    alone, none = extrapolate_with_growth(batch, 6, 2.0, growth=False)
    assert none is None
    np.testing.assert_array_equal(alone, extrapolation)


def test_with_a_growth_input_the_untrained_network_still_returns_its_conditioning():
    from nowcast_core.rainnet.direct import network_inputs
    from nowcast_core.rainnet.model import build_direct_rainnet

    model = build_direct_rainnet(4, 6, (1.0, 5.0), growth_input=True)
    frames, cond = _inputs()
    growth = np.random.default_rng(1).normal(0.0, 0.5, cond.shape).astype(np.float32)
    assert [i.name for i in model.inputs] == ["frames", "conditioning", "growth"]
    y = np.asarray(model(network_inputs(model, frames, np.concatenate([cond, growth], axis=-1)), training=False))
    np.testing.assert_allclose(y[..., :6], cond, atol=1e-6)  # growth enters through zero-initialised corrections


def test_split_outputs_gives_rates_and_probabilities_per_threshold_and_lead():
    from nowcast_core.rainnet.direct import split_outputs

    y = np.zeros((1, 128, 128, 18), np.float32)
    y[..., :6] = math.log(3.0 + 0.01)  # 3 mm/h everywhere
    y[..., 6:12] = 2.0  # logit 2 at 1 mm/h
    y[..., 12:] = -2.0
    rate, prob = split_outputs(y, 6)
    assert rate.shape == (1, 6, 120, 120) and prob.shape == (1, 2, 6, 120, 120)
    np.testing.assert_allclose(rate, 3.0, rtol=1e-5)
    np.testing.assert_allclose(prob[:, 0], 1 / (1 + math.exp(-2)), rtol=1e-5)
    np.testing.assert_allclose(prob[:, 1], 1 / (1 + math.exp(2)), rtol=1e-5)


def test_categorical_rates_raise_and_lower_the_rate_to_agree_with_nested_decisions():
    from nowcast_core.rainnet.direct import categorical_rates

    rate = np.array([0.3, 0.3, 3.0, 3.0, 8.0, 8.0], np.float32).reshape(1, 1, 1, 6)
    p1 = np.array([0.9, 0.1, 0.9, 0.1, 0.9, 0.9], np.float32).reshape(1, 1, 1, 6)
    p5 = np.array([0.9, 0.9, 0.1, 0.1, 0.9, 0.1], np.float32).reshape(1, 1, 1, 6)
    out = categorical_rates(rate, np.stack([p1, p5], axis=1), (1.0, 5.0), ((0.5,), (0.5,)))
    # p1 and p5 yes -> raised to 5; p5 yes but p1 no -> no rain category (nesting); p1 yes only -> [1, 5);
    # neither -> below 1; both yes at 8 -> kept; p1 yes, p5 no at 8 -> just below 5
    np.testing.assert_allclose(out.ravel(), [5.0, 0.3, 3.0, 0.999, 8.0, 4.999], atol=1e-6)


def test_under_heads_or_rate_a_rate_at_a_threshold_is_a_yes_the_heads_cannot_erase():
    from nowcast_core.rainnet.direct import categorical_rates, decision_counts

    rate = np.array([0.3, 3.0, 8.0, 8.0, 0.3], np.float32).reshape(1, 1, 1, 5)
    p1 = np.array([0.1, 0.1, 0.1, 0.9, 0.9], np.float32).reshape(1, 1, 1, 5)
    p5 = np.array([0.1, 0.1, 0.1, 0.1, 0.9], np.float32).reshape(1, 1, 1, 5)
    prob = np.stack([p1, p5], axis=1)
    heads = categorical_rates(rate, prob, (1.0, 5.0), ((0.5,), (0.5,)), "heads")
    either = categorical_rates(rate, prob, (1.0, 5.0), ((0.5,), (0.5,)), "heads-or-rate")
    # the heads alone lower 3 and 8 below 1 (p1 no); with the rate they stay, and a head still raises 0.3 to 5
    np.testing.assert_allclose(heads.ravel(), [0.3, 0.999, 0.999, 4.999, 5.0], atol=1e-6)
    np.testing.assert_allclose(either.ravel(), [0.3, 3.0, 8.0, 8.0, 5.0], atol=1e-6)
    # the counts the rule is chosen on see the same yes: at 5 mm/h the two 8s are yes at every probability
    observed = np.array([0.0, 0.0, 9.0, 0.0, 6.0], np.float32).reshape(1, 1, 1, 5)
    grid = (0.5, 0.95)
    counts = decision_counts(prob, observed, (1.0, 5.0), grid, rate_mm_h=rate, rule="heads-or-rate")
    assert counts[1, 0].tolist() == [[2, 0, 1], [1, 1, 1]]  # (hits, misses, false alarms) at 0.5 and 0.95
    assert decision_counts(prob, observed, (1.0, 5.0), grid, rate_mm_h=rate)[1, 0].tolist() == [[1, 1, 0], [0, 2, 0]]
    with pytest.raises(ValueError, match="unknown decision rule"):
        categorical_rates(rate, prob, (1.0, 5.0), ((0.5,), (0.5,)), "rate")


def test_the_decision_rule_is_saved_with_the_model_and_older_files_read_as_heads(tmp_path):
    from dataclasses import asdict

    from nowcast_core.rainnet.config import CONFIG_MEMBER, RainNetConfig, read_config

    config = RainNetConfig(direct=True, growth_input=True, exceedance_thresholds_mm_h=(1.0, 5.0),
                           decision_probability=((0.4,) * 6, (0.2,) * 6), decision_rule="heads-or-rate")
    older = {k: v for k, v in asdict(config).items() if k != "decision_rule"}
    for name, saved in (("new", asdict(config)), ("old", older)):
        with zipfile.ZipFile(tmp_path / f"{name}.keras", "w") as archive:
            archive.writestr(CONFIG_MEMBER, json.dumps(saved))
    assert read_config(tmp_path / "new.keras") == config
    assert read_config(tmp_path / "old.keras").decision_rule == "heads"  # how it decided before the rule was kept


def test_the_decision_probability_is_the_one_with_the_best_csi_on_the_counts():
    from nowcast_core.rainnet.direct import (
        DECISION_GRID,
        choose_decision_probability,
        decision_counts,
    )

    rng = np.random.default_rng(1)
    observed = rng.gamma(0.4, 2.0, (20, 6, 16, 16)).astype(np.float32)
    # a forecaster whose probability is a noisy but informative function of the truth
    prob = np.clip((observed[:, None] >= np.array([1.0, 5.0])[None, :, None, None, None]) * 0.6
                   + rng.uniform(0, 0.4, (20, 2, 6, 16, 16)), 0, 1).astype(np.float32)
    observed[0, 0, 0, 0] = np.nan  # not observed: left out
    counts = decision_counts(prob, observed, (1.0, 5.0))
    assert counts.shape == (2, 6, len(DECISION_GRID), 3)
    decision = choose_decision_probability(counts)
    assert len(decision) == 2 and all(len(row) == 6 for row in decision)
    # brute force for one threshold and lead
    obs = observed[:, 2]
    wet, valid = obs >= 5.0, np.isfinite(obs)
    csi = []
    for tau in DECISION_GRID:
        f = (prob[:, 1, 2] >= tau) & valid
        csi.append(np.sum(f & wet) / np.sum(f | wet))
    assert decision[1][2] == DECISION_GRID[int(np.argmax(csi))]
    # wet pixels have 0.6 .. 1, dry ones 0 .. 0.4: the first probability that separates them
    assert decision[1][2] == 0.4 and max(csi) == 1.0


def test_the_direct_loss_is_its_terms_and_rewards_the_right_exceedance():
    import tensorflow as tf

    from nowcast_core.rainnet.direct import direct_loss

    rng = np.random.default_rng(2)
    target = rng.normal(-1.0, 2.0, (2, 120, 120, 6)).astype(np.float32)
    pred = np.zeros((2, 128, 128, 18), np.float32)
    pred[:, 4:124, 4:124, :6] = target + 0.5  # rate off by 0.5 on ln(R + 0.01)
    logcosh = float(direct_loss((1.0, 5.0), 6, 1.0, 0.0, 0.0)(tf.constant(target), tf.constant(pred)))
    np.testing.assert_allclose(logcosh, math.log(math.cosh(0.5)), rtol=1e-4)
    levels = np.log(np.array([1.0, 5.0]) + 0.01)
    right, wrong = pred.copy(), pred.copy()
    for i, level in enumerate(levels):
        above = (target >= level)
        right[:, 4:124, 4:124, 6 * (i + 1) : 6 * (i + 2)] = np.where(above, 4.0, -4.0)
        wrong[:, 4:124, 4:124, 6 * (i + 1) : 6 * (i + 2)] = np.where(above, -4.0, 4.0)
    bce = direct_loss((1.0, 5.0), 6, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(float(bce(tf.constant(target), tf.constant(right))), math.log1p(math.exp(-4)), rtol=1e-4)
    np.testing.assert_allclose(float(bce(tf.constant(target), tf.constant(wrong))), math.log1p(math.exp(4)), rtol=1e-4)


@pytest.mark.parametrize("growth_input, thresholds, members", [(False, (1.0, 5.0), 1), (True, (1.0, 5.0), 1),
                                                                 (True, (1.0, 5.0, 10.0), 1), (True, (1.0, 5.0), 2)])
def test_a_tiny_direct_training_run_saves_its_decisions_and_forecasts_through_the_interface(tmp_path, growth_input,
                                                                                             thresholds, members):
    if not RADAR.is_dir():
        pytest.skip(f"real radar data not found at {RADAR}")
    from nowcast_core.forecasters import get_method
    from nowcast_core.rainnet.config import CONFIG_MEMBER
    from nowcast_core.rainnet.train import report_path_for, train_from_folders

    out = tmp_path / "direct.keras"
    history = train_from_folders([RADAR / "mch-20170131-w0", RADAR / "fmi-20160928-w0"], out, base_filters=4,
                                 direct=True, epochs=1, smoothing_px_per_lead=2.0, rain_mae_weight=1.0,
                                 logcosh_weight=0.3, exceedance_weight=2.0, max_samples_per_folder=4,
                                 val_events=["fmi-20160928"], batch_size=4, progress=False, with_baselines=False,
                                 growth_input=growth_input, exceedance_thresholds_mm_h=thresholds, members=members)
    assert history["n_train_samples"] == 4 and [e["stage"] for e in history["epochs"]] == ["direct"] * members
    if members > 1:  # one after the other, each with its own seed; the saved model is their mean
        assert [e["member"] for e in history["epochs"]] == [0, 1]
    with zipfile.ZipFile(out) as archive:
        saved = json.loads(archive.read(CONFIG_MEMBER))
    assert saved["direct"] is True and saved["exceedance_thresholds_mm_h"] == list(thresholds)
    assert saved["growth_input"] is growth_input and saved["members"] == members
    assert np.array(saved["decision_probability"]).shape == (len(thresholds), 6)
    report = json.loads(report_path_for(out).read_text())
    assert report["decision_probability"] == saved["decision_probability"]
    assert [r["lead_minutes"] for r in report["final_validation"]["rainnet"]] == [10, 20, 30, 40, 50, 60]

    forecaster = get_method("rainnet", model_path=out)  # safe mode
    assert history["parameters"] == forecaster.model.count_params()
    if members > 1:
        first, second = (forecaster.model.get_layer(f"member_{k}") for k in range(2))
        assert forecaster.model.count_params() == 2 * first.count_params()
        assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights()))
    assert forecaster.config.direct and forecaster.config.decision_probability == tuple(
        tuple(row) for row in saved["decision_probability"])
    rain = np.random.default_rng(0).gamma(0.3, 3.0, size=(3, 4, 120, 120)).astype(np.float32)
    y = forecaster.forecast(rain)
    assert y.shape == (3, 6, 120, 120) and np.all(np.isfinite(y)) and np.all(y >= 0)


def test_the_mean_of_members_is_one_network_that_loads_in_safe_mode_and_keeps_each_member(tmp_path):
    import keras

    from nowcast_core.rainnet.config import RainNetConfig, load_model, save_model
    from nowcast_core.rainnet.model import average_members, build_direct_rainnet

    members = [build_direct_rainnet(4, 6, (1.0, 5.0, 10.0), growth_input=True) for _ in range(2)]
    rng = np.random.default_rng(3)
    for member in members:
        member.set_weights([rng.normal(0.0, 0.05, w.shape).astype(np.float32) for w in member.get_weights()])
    frames, conditioning = _inputs()
    inputs = [frames, conditioning, conditioning / 4]
    outputs = [np.asarray(member(inputs)) for member in members]
    mean = average_members(members)
    assert len(mean.inputs) == 3 and mean.count_params() == 2 * members[0].count_params()
    np.testing.assert_allclose(np.asarray(mean(inputs)), (outputs[0] + outputs[1]) / 2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs[0], outputs[1])
    config = RainNetConfig(base_filters=4, conditioning=True, direct=True, growth_input=True,
                           exceedance_thresholds_mm_h=(1.0, 5.0, 10.0), members=2)
    loaded, saved = load_model(save_model(mean, tmp_path / "mean.keras", config))  # safe mode
    assert saved.members == 2
    np.testing.assert_allclose(np.asarray(loaded(inputs)), np.asarray(mean(inputs)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.get_layer("member_1")(inputs)), outputs[1], rtol=1e-6, atol=1e-6)
    fresh = config.build()  # the configuration builds the same structure, for fine-tuning from the file
    fresh.set_weights(loaded.get_weights())
    assert isinstance(fresh.get_layer("member_0"), keras.Model)
    assert RainNetConfig().members == 1 and average_members(members[:1]) is members[0]


def test_intensity_augmentation_scales_scans_targets_and_extrapolation_alike_but_not_growth():
    """A factor s per sample: every rain channel becomes s R (exactly, through ln(R + 0.01)); the growth
    channels are untouched; without augmentation the batch is the samples as they are."""
    from nowcast_core.rainnet.dataset import Samples
    from nowcast_core.rainnet.direct import _batches, scale_intensity
    from nowcast_core.rainnet.preprocess import log_to_rain_rate, rain_rate_to_log

    rain = np.array([[0.0, 0.5], [2.0, 40.0]], np.float32)
    np.testing.assert_allclose(log_to_rain_rate(scale_intensity(rain_rate_to_log(rain), 2.0)), 2 * rain, rtol=1e-5)

    rng = np.random.default_rng(1)
    rates = np.zeros((2, 120, 120, 16), np.float32)
    rates[:, 40:80, 40:80] = rng.gamma(1.0, 5.0, (2, 40, 40, 16))  # one patch: any rotation or flip keeps its sum
    frames = rain_rate_to_log(rates[..., :10])
    growth = np.full((2, 120, 120, 6), 0.3, np.float32)
    samples = Samples(frames, np.concatenate([rain_rate_to_log(rates[..., 10:]), growth], -1), ["a", "a"], ["", ""])

    def batch(log_range, augment=True):
        (scans, extrapolation, growth_in), targets = _batches(samples, 2, augment, 7, True, log_range)[0]
        return (log_to_rain_rate(scans[:, 4:-4, 4:-4]), log_to_rain_rate(targets),
                log_to_rain_rate(extrapolation[:, 4:-4, 4:-4]), growth_in)

    plain = batch(0.0, augment=False)
    np.testing.assert_allclose(plain[0], rates[..., :4], rtol=1e-5, atol=1e-6)
    scans, targets, extrapolation, growth_in = batch(math.log(2.0))
    for i in range(2):  # the same factor on every rain channel of a sample, and within [1/2, 2]
        factors = [x[i].sum() / y[i].sum() for x, y in ((scans, plain[0]), (targets, plain[1]), (extrapolation, plain[2]))]
        assert 0.5 <= factors[0] <= 2.0 and factors[0] != pytest.approx(1.0, abs=1e-3)
        np.testing.assert_allclose(factors, factors[0], rtol=1e-3)
    np.testing.assert_array_equal(growth_in[:, 4:-4, 4:-4], growth)


def test_intensity_augmentation_is_refused_for_a_recursive_network():
    from nowcast_core.rainnet.config import TrainConfig
    from nowcast_core.rainnet.train import train

    with pytest.raises(ValueError, match="intensity_log_range is a setting of the direct RainNet"):
        train(None, None, TrainConfig(intensity_log_range=0.5))


def test_core_probability_keeps_the_unsmoothed_extrapolations_heavy_cores_the_heads_let_through():
    """A pixel where the unsmoothed extrapolation reaches a threshold is a yes from the (lower) core
    probability on; not where the network rules it out, not at thresholds without a core probability, and
    still nested under the lower thresholds."""
    from nowcast_core.rainnet.direct import categorical_rates

    rate = np.array([2.0, 2.0, 2.0, 0.3, 2.0], np.float32).reshape(1, 1, 1, 5)
    p1 = np.array([0.9, 0.9, 0.9, 0.1, 0.9], np.float32).reshape(1, 1, 1, 5)
    p5 = np.array([0.2, 0.05, 0.2, 0.2, 0.2], np.float32).reshape(1, 1, 1, 5)
    sharp = np.array([7.0, 7.0, 3.0, 7.0, 7.0], np.float32).reshape(1, 1, 1, 5)
    prob = np.stack([p1, p5], axis=1)
    decision = ((0.5,), (0.5,))
    plain = categorical_rates(rate, prob, (1.0, 5.0), decision, "heads-or-rate")
    np.testing.assert_allclose(plain.ravel(), [2.0, 2.0, 2.0, 0.3, 2.0], atol=1e-6)
    cores = categorical_rates(rate, prob, (1.0, 5.0), decision, "heads-or-rate", sharp, (None, 0.1))
    # a core with P 0.2 >= 0.1 -> 5; P 0.05 ruled out; no core (3 mm/h); below 1 mm/h, so not at 5 (nesting)
    np.testing.assert_allclose(cores.ravel(), [5.0, 2.0, 2.0, 0.3, 5.0], atol=1e-6)
    np.testing.assert_array_equal(
        categorical_rates(rate, prob, (1.0, 5.0), decision, "heads-or-rate", sharp, (None, None)), plain)
    with pytest.raises(ValueError, match="unsmoothed extrapolation"):
        categorical_rates(rate, prob, (1.0, 5.0), decision, "heads-or-rate", None, (None, 0.1))
    with pytest.raises(ValueError, match="2 thresholds"):
        categorical_rates(rate, prob, (1.0, 5.0), decision, "heads-or-rate", sharp, (0.1,))


def test_the_core_probability_is_chosen_by_the_csi_of_held_out_counts_and_none_wins_a_tie():
    from nowcast_core.rainnet.direct import CORE_CHOICES, choose_core_probability, core_counts

    rate = np.full((1, 2, 1, 4), 2.0, np.float32)
    p5 = np.array([0.3, 0.3, 0.12, 0.12], np.float32).reshape(1, 1, 1, 4).repeat(2, axis=1)
    prob = np.stack([np.full_like(p5, 0.9), p5], axis=1)
    sharp = np.array([6.0, 6.0, 6.0, 1.0], np.float32).reshape(1, 1, 1, 4).repeat(2, axis=1)
    observed = np.array([6.0, 0.0, 6.0, 6.0], np.float32).reshape(1, 1, 1, 4).repeat(2, axis=1)
    counts = core_counts(rate, prob, sharp, observed, (1.0, 5.0), ((0.5, 0.5), (0.5, 0.5)), "heads-or-rate")
    assert counts.shape == (2, 2, len(CORE_CHOICES), 3)
    by_choice = dict(zip(CORE_CHOICES, counts[1, 0].tolist()))
    assert by_choice[None] == [0, 3, 0]  # the heads (0.3 < 0.5) and the rate (2) say no everywhere
    assert by_choice[0.1] == [2, 1, 1] and by_choice[0.25] == [1, 2, 1]  # the cores of P >= 0.1, of P >= 0.25
    # 1 mm/h: every choice gives the same counts, so none is kept; 5 mm/h: 0.05, 0.1 tie for the best CSI
    assert choose_core_probability(counts) == (None, 0.05)


def test_the_unsmoothed_extrapolation_comes_from_the_same_motion_field():
    if not RADAR.is_dir():
        pytest.skip(f"real radar data not found at {RADAR}")
    from nowcast_core.extrapolation import direct_inputs, extrapolate_batch, extrapolate_with_growth
    from nowcast_core.io.sequences import folder_sequences

    _, inputs, _ = folder_sequences(RADAR / "knmi-w0")
    batch = np.concatenate([inputs[10:13], np.zeros_like(inputs[:1])])
    both = direct_inputs(batch, 6, 2.0, growth=True, sharp=True)
    smoothed, growth = extrapolate_with_growth(batch, 6, 2.0)
    np.testing.assert_array_equal(both.extrapolation, smoothed)
    np.testing.assert_array_equal(both.growth, growth)
    np.testing.assert_array_equal(both.sharp, extrapolate_batch(batch, 6, 0.0))
    assert both.sharp[:3].max() > both.extrapolation[:3].max() and not both.sharp[3].any()
    assert direct_inputs(batch, 6, 2.0, growth=False).sharp is None


def test_core_probabilities_are_saved_with_the_model_and_older_files_have_none(tmp_path):
    from dataclasses import asdict

    from nowcast_core.rainnet.config import CONFIG_MEMBER, RainNetConfig, read_config

    config = RainNetConfig(direct=True, exceedance_thresholds_mm_h=(1.0, 5.0, 10.0),
                           decision_probability=((0.4,) * 6, (0.2,) * 6, (0.2,) * 6),
                           decision_rule="heads-or-rate", core_probability=(None, 0.1, 0.05))
    older = {k: v for k, v in asdict(config).items() if k != "core_probability"}
    for name, saved in (("new", asdict(config)), ("old", older)):
        with zipfile.ZipFile(tmp_path / f"{name}.keras", "w") as archive:
            archive.writestr(CONFIG_MEMBER, json.dumps(saved))
    assert read_config(tmp_path / "new.keras") == config
    assert read_config(tmp_path / "old.keras").core_probability == ()


def test_the_forecaster_of_a_model_with_core_probabilities_keeps_the_cores_it_is_configured_for(tmp_path):
    """Saved with core probabilities, a direct network forecasts through the production path with the
    unsmoothed extrapolation of the same scans; without them, as the decisions alone say."""
    if not RADAR.is_dir():
        pytest.skip(f"real radar data not found at {RADAR}")
    from dataclasses import replace

    from nowcast_core.extrapolation import direct_inputs
    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sequences import folder_sequences
    from nowcast_core.rainnet.config import RainNetConfig, save_model
    from nowcast_core.rainnet.direct import categorical_rates, conditioning_channels, direct_outputs

    plain = RainNetConfig(base_filters=4, direct=True, growth_input=True, smoothing_px_per_lead=2.0,
                          exceedance_thresholds_mm_h=(1.0, 5.0), decision_probability=((0.5,) * 6, (0.9,) * 6),
                          decision_rule="heads-or-rate")
    cores = replace(plain, core_probability=(None, 0.05))
    model = plain.build()
    _, inputs, _ = folder_sequences(RADAR / "mch-20170131-w0")
    inputs = inputs[5:7]
    both = direct_inputs(inputs, 6, 2.0, growth=True, sharp=True)
    rate, prob = direct_outputs(model, inputs, conditioning_channels(both.extrapolation, both.growth))
    for name, config in (("plain", plain), ("cores", cores)):
        forecast = get_method("rainnet", model_path=save_model(model, tmp_path / f"{name}.keras", config)).forecast(inputs)
        expected = categorical_rates(rate, prob, (1.0, 5.0), config.decision_probability, "heads-or-rate",
                                     both.sharp, config.core_probability)
        np.testing.assert_allclose(forecast, expected, atol=1e-5)
    with_cores = get_method("rainnet", model_path=tmp_path / "cores.keras").forecast(inputs)
    without = get_method("rainnet", model_path=tmp_path / "plain.keras").forecast(inputs)
    assert ((with_cores >= 5) & (without < 5)).sum() > 0  # an untrained network's heads let some cores through
