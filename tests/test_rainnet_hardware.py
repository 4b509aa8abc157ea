"""The forecast is the same, within tolerance, on every execution path the hardware may pick:
XLA-compiled or not, float32 or mixed float16 (the GPU training policy). Run here on the CPU;
a GPU takes the same code paths."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_core.verification.scores import scores_per_lead

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def shipped_and_inputs(shared_radar):
    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sequences import folder_sequences

    forecaster = get_method("rainnet")
    _, inputs, _ = folder_sequences(shared_radar / "mch-20150515-w0")
    return forecaster, inputs[:6]


def _close(a: np.ndarray, b: np.ndarray, mae_tol: float, csi_tol: float) -> None:
    assert a.shape == b.shape == (6, 6, 120, 120)
    assert np.abs(a - b).mean() < mae_tol, np.abs(a - b).mean()
    for ra, rb in zip(scores_per_lead(a, b), scores_per_lead(b, a), strict=True):
        assert ra["csi_1"] > 1 - csi_tol, ra  # a's 1 mm/h area is b's
        assert rb["csi_1"] > 1 - csi_tol, rb


def test_xla_compiled_forecast_equals_the_plain_one(shipped_and_inputs):
    """XLA compiles a recursive network's six steps (on a GPU by default). The shipped network is direct
    (one call, never compiled), so a recursive network of the same width, with random weights in its head
    so that it changes its input, is compiled here."""
    import keras

    from nowcast_core.extrapolation import extrapolate_batch
    from nowcast_core.rainnet.config import RainNetConfig
    from nowcast_core.rainnet.recursive import recursive_forecast

    _, inputs = shipped_and_inputs
    keras.utils.set_random_seed(0)
    config = RainNetConfig(base_filters=16, conditioning=True, smoothing_px_per_lead=2.0)
    model = config.build()
    head = next(layer for layer in reversed(model.layers) if layer.weights)
    kernel, bias = head.get_weights()[:2]
    head.set_weights([np.random.default_rng(0).normal(0.0, 0.05, kernel.shape).astype(np.float32), bias])
    extrapolation = extrapolate_batch(inputs, 6, config.smoothing_px_per_lead)
    plain = recursive_forecast(model, inputs, 6, 6, extrapolation, jit_compile=False)
    xla = recursive_forecast(model, inputs, 6, 6, extrapolation, jit_compile=True)
    assert plain.max() > 1.0  # a wet event
    assert np.abs(plain - recursive_forecast(config.build(), inputs, 6, 6, extrapolation, jit_compile=False)).max() > 0.01
    _close(xla, plain, mae_tol=1e-4, csi_tol=1e-3)


def test_mixed_precision_forecast_equals_float32_within_tolerance(shipped_and_inputs):
    """The shipped network rebuilt under the GPU training policy (mixed float16) forecasts as in float32."""
    import keras

    from nowcast_core.forecasters.rainnet import network_forecast

    forecaster, inputs = shipped_and_inputs
    model, config = forecaster.model, forecaster.config
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = config.build()
        half.set_weights(model.get_weights())
        assert half.get_layer("enc1_conv1").compute_dtype == "float16"
        mixed = network_forecast(half, config, inputs)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    plain = network_forecast(model, config, inputs)
    assert plain.max() > 1.0
    # float16 keeps ~3 significant digits; a direct network's decisions flip where a probability sits at one
    _close(mixed, plain, mae_tol=0.02, csi_tol=0.02)
