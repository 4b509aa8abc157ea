"""Issue 10's pieces: intensity matching, the upstream-source mask, the neighbourhood loss, recipes."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_core.postprocessing import match_intensity


def _blurred_storm():
    """A forecast that kept the storm's place but smeared its core, and the scan it came from."""
    from scipy.ndimage import gaussian_filter

    newest = np.zeros((120, 120))
    newest[50:70, 50:70] = 2.0
    newest[57:63, 57:63] = 20.0
    forecast = np.stack([gaussian_filter(newest, 3.0 * (k + 1)) for k in range(6)])[None]
    return forecast, newest[None]


def test_matching_restores_the_newest_scans_intensities_and_keeps_the_ranks():
    forecast, newest = _blurred_storm()
    assert forecast[0, 5].max() < 10  # the core was smeared away
    matched = match_intensity(forecast, newest)
    assert matched.shape == forecast.shape and matched.dtype == np.float32
    for k in range(6):
        # the heavy core (36 pixels at 20 mm/h) is back, at the forecast's own maximum
        assert np.count_nonzero(matched[0, k] >= 20.0) == 36
        assert matched[0, k][np.unravel_index(np.argmax(forecast[0, k]), (120, 120))] >= 20.0
        # ranks are kept: a pixel wetter in the forecast is not drier after matching (ties may split)
        order = np.lexsort((matched[0, k].ravel(), forecast[0, k].ravel()))
        assert np.all(np.diff(matched[0, k].ravel()[order]) >= -1e-9)


def test_matching_weight_blends_and_zero_is_the_raw_forecast():
    forecast, newest = _blurred_storm()
    full = match_intensity(forecast, newest, 1.0)
    half = match_intensity(forecast, newest, 0.5)
    assert np.allclose(match_intensity(forecast, newest, 0.0), forecast, atol=1e-6)
    assert np.allclose(half, 0.5 * full + 0.5 * forecast, atol=1e-4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        match_intensity(forecast, newest, 1.5)


def test_matching_leaves_dry_fields_and_treats_no_data_as_dry():
    forecast, newest = _blurred_storm()
    dry_reference = np.zeros_like(newest)
    assert np.allclose(match_intensity(forecast, dry_reference), forecast, atol=1e-6)
    dry_forecast = np.zeros_like(forecast)
    assert np.all(match_intensity(dry_forecast, newest) == 0)
    holes = newest.copy()
    holes[0, :10] = np.nan
    out = match_intensity(forecast, holes)
    assert np.all(np.isfinite(out)) and np.all(out >= 0)


def test_upstream_source_is_false_where_rain_can_only_come_from_outside():
    from nowcast_core.extrapolation import upstream_source

    scans = np.zeros((4, 120, 120))
    for k in range(4):  # a band moving east by 3 pixels a scan
        scans[k, 40:80, 20 + 3 * k:50 + 3 * k] = 4.0
    mask = upstream_source(scans, 6)
    assert mask.shape == (6, 120, 120) and mask.dtype == bool
    # the western edge has no upstream source (the flow comes from the west), more so with lead
    assert not mask[5, 60, 0] and mask[5, 60, 60]
    assert (~mask[5]).sum() > (~mask[0]).sum() > 0
    assert upstream_source(np.zeros((4, 120, 120)), 6).all()  # dry: nothing advected


def test_fss_loss_is_small_for_a_perfect_forecast_and_punishes_a_blurred_core():
    tf = pytest.importorskip("tensorflow")
    from nowcast_core.rainnet.train import fss_loss

    forecast, newest = _blurred_storm()
    log_obs = np.log(newest[0] + 0.01)[None, :, :, None].astype(np.float32)
    log_blur = np.log(forecast[0, 5] + 0.01)[None, :, :, None].astype(np.float32)
    perfect = float(fss_loss(tf.constant(log_obs), tf.constant(log_obs)))  # not 0: the sigmoid is soft
    blurred = float(fss_loss(tf.constant(log_obs), tf.constant(log_blur)))
    assert 0 <= perfect < 0.1 and blurred > 3 * perfect


def test_recipes_are_data_and_unknown_names_are_refused():
    from nowcast_core.rainnet.recipes import RECIPES, get_recipe
    from nowcast_core.rainnet.train import train_from_folders

    for name in RECIPES:  # every key is a training setting
        assert set(get_recipe(name)) <= set(train_from_folders.__kwdefaults__), name
    shipped = get_recipe("shipped")
    shipped["epochs"] = -1
    assert get_recipe("shipped")["epochs"] != -1  # a copy
    assert {"shipped", "recursive", "loeo-direct-exceedance", "loeo-direct-growth"} <= set(RECIPES)
    # the bundled model's recipe is the one the leave-one-event-out test chose (docs/MODEL_CARD.md)
    assert get_recipe("shipped") == get_recipe("loeo-direct-heads-or-rate")
    assert get_recipe("shipped") == {**get_recipe("loeo-direct-growth-intensity-10"), "decision_rule": "heads-or-rate"}
    with pytest.raises(ValueError, match=f"unknown recipe 'nope'; known: {', '.join(sorted(RECIPES))}$"):
        get_recipe("nope")



def test_the_loss_terms_are_weighted_as_configured():
    import tensorflow as tf

    from nowcast_core.rainnet.model import build_rainnet
    from nowcast_core.rainnet.train import _unroll_loss

    model = build_rainnet(4)
    rng = np.random.default_rng(0)
    batch = {"frames": tf.constant(rng.normal(-2.0, 1.5, (2, 128, 128, 6)).astype(np.float32))}
    full, _ = _unroll_loss(model, batch, 2, False)
    half, _ = _unroll_loss(model, batch, 2, False, logcosh_weight=0.5)
    none, _ = _unroll_loss(model, batch, 2, False, logcosh_weight=0.0)
    assert float(full) > 0 and float(none) == 0.0
    np.testing.assert_allclose(float(half), 0.5 * float(full), rtol=1e-5)
    with_fss, _ = _unroll_loss(model, batch, 2, False, fss_weight=1.0, logcosh_weight=0.0)
    assert float(with_fss) > 0  # the neighbourhood term alone
