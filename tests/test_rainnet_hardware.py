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
    from nowcast_core.extrapolation import extrapolate_batch
    from nowcast_core.forecasters import get_method
    from nowcast_core.io.sequences import folder_sequences
    forecaster = get_method("rainnet")
    _, inputs, _ = folder_sequences(shared_radar / "mch-20150515-w0")
    inputs = inputs[:6]
    extrapolation = extrapolate_batch(inputs, 6, forecaster.config.smoothing_px_per_lead)
    return forecaster, inputs, extrapolation


def _close(a: np.ndarray, b: np.ndarray, mae_tol: float, csi_tol: float) -> None:
    assert a.shape == b.shape == (6, 6, 120, 120)
    assert np.abs(a - b).mean() < mae_tol, np.abs(a - b).mean()
    for ra, rb in zip(scores_per_lead(a, b), scores_per_lead(b, a), strict=True):
        assert ra["csi_1"] > 1 - csi_tol, ra  # a's 1 mm/h area is b's
        assert rb["csi_1"] > 1 - csi_tol, rb


def test_xla_compiled_forecast_equals_the_plain_one(shipped_and_inputs):
    from nowcast_core.rainnet.recursive import recursive_forecast

    forecaster, inputs, extrapolation = shipped_and_inputs
    model = forecaster.model
    plain = recursive_forecast(model, inputs, 6, 6, extrapolation, jit_compile=False)
    xla = recursive_forecast(model, inputs, 6, 6, extrapolation, jit_compile=True)
    assert plain.max() > 1.0  # a wet event
    _close(xla, plain, mae_tol=1e-4, csi_tol=1e-3)


def test_mixed_precision_forecast_equals_float32_within_tolerance(shipped_and_inputs):
    import keras

    from nowcast_core.rainnet.recursive import recursive_forecast

    forecaster, inputs, extrapolation = shipped_and_inputs
    model = forecaster.model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = forecaster.config.build()
        half.set_weights(model.get_weights())
        assert half.get_layer("enc1_conv1").compute_dtype == "float16"
        assert half.output.dtype == "float32"  # the output head stays float32
        mixed = recursive_forecast(half, inputs, 6, 6, extrapolation, jit_compile=False)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    plain = recursive_forecast(model, inputs, 6, 6, extrapolation, jit_compile=False)
    # float16 keeps ~3 significant digits; six recursive steps compound it
    _close(mixed, plain, mae_tol=0.02, csi_tol=0.02)
