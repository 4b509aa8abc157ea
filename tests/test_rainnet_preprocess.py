"""Invertible transforms, padding and the batched recursive forecast."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_core.io.scale import pixel_to_rain_rate
from nowcast_core.rainnet import preprocess as pp


def test_pixel_log_rain_round_trip():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rain = pixel_to_rain_rate(pixels)
    log = pp.pixel_to_log(pixels)
    np.testing.assert_allclose(log, np.log(rain + 0.01), rtol=1e-6)
    np.testing.assert_allclose(pp.log_to_rain_rate(log), rain, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pp.rain_rate_to_log(pp.log_to_rain_rate(log)), log, atol=1e-5)


def test_inverse_clips_at_zero_and_no_data_is_no_rain():
    assert pp.log_to_rain_rate(np.array([-9.0, pp.NO_RAIN_LOG]))[0] == 0.0
    assert pp.log_to_rain_rate(np.array([pp.NO_RAIN_LOG]))[0] == pytest.approx(0.0, abs=1e-7)
    r = np.array([np.nan, 0.0, 3.0], np.float32)
    log = pp.rain_rate_to_log(r)
    assert np.all(np.isfinite(log)) and log[0] == pytest.approx(pp.NO_RAIN_LOG)
    nodata = np.zeros((4, 4), bool)
    nodata[0, 0] = True
    assert pp.pixel_to_log(np.full((4, 4), 200, np.uint8), nodata)[0, 0] == pytest.approx(pp.NO_RAIN_LOG)


def test_stack_pad_crop_round_trip():
    rng = np.random.default_rng(1)
    scans = rng.random((3, 4, 120, 120), dtype=np.float32)
    stacked = pp.stack_scans(scans)
    assert stacked.shape == (3, 120, 120, 4)
    np.testing.assert_array_equal(stacked[..., 0], scans[:, 0])
    padded = pp.pad(stacked)
    assert padded.shape == (3, 128, 128, 4)
    np.testing.assert_array_equal(padded[:, 3, 4:-4], stacked[:, 1])  # mirror, edge not repeated
    np.testing.assert_array_equal(pp.crop(padded), stacked)
    np.testing.assert_array_equal(pp.unstack_scans(pp.crop(padded)), scans)
    tf = pytest.importorskip("tensorflow")
    np.testing.assert_array_equal(pp.pad_tf(tf.constant(stacked)).numpy(), padded)
    np.testing.assert_array_equal(pp.crop_tf(tf.constant(padded)).numpy(), stacked)


def test_model_io_round_trip():
    rng = np.random.default_rng(2)
    rain = rng.gamma(0.3, 3.0, size=(2, 4, 120, 120)).astype(np.float32)
    back = pp.from_model_outputs(pp.to_model_inputs(rain))
    np.testing.assert_allclose(back, rain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("conditioned", [False, True])
def test_recursive_forecast_shape_finite_non_negative(conditioned):
    pytest.importorskip("tensorflow")
    from nowcast_core.rainnet.model import build_rainnet
    from nowcast_core.rainnet.recursive import recursive_forecast

    model = build_rainnet(4, conditioning_channels=int(conditioned), residual=conditioned)
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.3, 3.0, size=(5, 4, 120, 120)).astype(np.float32)
    rain[0, :, :10, :10] = np.nan
    out = recursive_forecast(model, rain, n_leads=6, batch_size=2)
    assert out.shape == (5, 6, 120, 120) and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.all(out >= 0)
    if conditioned:
        # untrained residual model = the extrapolation it is conditioned on
        from nowcast_core.extrapolation import extrapolate_batch

        np.testing.assert_allclose(out, extrapolate_batch(rain, 6), rtol=1e-3, atol=1e-3)


def test_smoothed_extrapolation_and_build_configuration_saved_in_the_model_file(tmp_path):
    pytest.importorskip("tensorflow")
    from nowcast_core.extrapolation import smooth_leads
    from nowcast_core.forecasters import get_method
    from nowcast_core.rainnet.config import RainNetConfig, read_config, save_model

    field = np.zeros((6, 40, 40), np.float32)
    field[:, 20, 20] = 100.0
    smoothed = smooth_leads(field, 2.0)
    assert np.all(smoothed >= 0)
    peaks = smoothed[:, 20, 20]
    assert np.all(np.diff(peaks) < 0)  # longer lead, wider kernel, lower peak
    np.testing.assert_allclose(smoothed.sum(axis=(1, 2)), 100.0, rtol=1e-3)  # rain volume kept
    np.testing.assert_array_equal(smooth_leads(field, 0.0), field)
    config = RainNetConfig(base_filters=4, conditioning=True, smoothing_px_per_lead=2.0)
    path = save_model(config.build(), tmp_path / "m.keras", config)
    assert read_config(path) == config
    forecaster = get_method("rainnet", model_path=path)  # loads in safe mode, reads the configuration back
    assert forecaster.config == config and len(forecaster.model.inputs) == 2
    plain = RainNetConfig(base_filters=4, conditioning=False)
    assert read_config(save_model(plain.build(), tmp_path / "p.keras", plain)).conditioning is False
    (tmp_path / "old.keras").write_bytes((tmp_path / "p.keras").read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable"):
        read_config(tmp_path / "old.keras")
