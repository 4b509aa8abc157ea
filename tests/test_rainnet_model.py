"""RainNet network: the paper's size at full width, and one training step on padded 120 x 120 inputs."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from nowcast_core.rainnet.losses import logcosh, rain_mae  # noqa: E402
from nowcast_core.rainnet.model import build_rainnet  # noqa: E402
from nowcast_core.rainnet.preprocess import pad, rain_rate_to_log, stack_scans  # noqa: E402


def test_full_width_has_paper_parameter_count_and_trains_one_step():
    model = build_rainnet(64)
    assert round(model.count_params() / 1e6, 1) == 31.4
    rng = np.random.default_rng(0)
    rain = rng.gamma(0.5, 2.0, size=(2, 5, 120, 120)).astype(np.float32)
    x = pad(stack_scans(rain_rate_to_log(rain)))
    assert x.shape == (2, 128, 128, 5)
    inputs, target = tf.constant(x[..., :4]), tf.constant(x[..., 4:])
    optimizer = keras.optimizers.Adam(1e-4)
    before = [w.numpy().copy() for w in model.trainable_variables[:2]]
    with tf.GradientTape() as tape:
        loss = logcosh(target - model(inputs, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert np.isfinite(float(loss))
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_variables[:2]))


def test_shared_loss_terms_equal_the_tensorflow_expressions_the_recursive_model_was_trained_with():
    """Bit for bit, values and gradients: so ``nowcast train --recipe recursive`` still reproduces it."""
    rng = np.random.default_rng(3)
    target = tf.constant(rng.normal(-1.0, 2.5, (2, 120, 120, 6)).astype(np.float32))
    pred = tf.Variable(rng.normal(-1.0, 2.5, (2, 120, 120, 6)).astype(np.float32))

    def tf_logcosh(error):
        a = tf.abs(error)
        return tf.reduce_mean(a + tf.math.softplus(-2.0 * a) - np.log(2.0))

    def tf_rain_mae(log_target, log_pred):
        def rate(x):
            return tf.nn.relu(tf.exp(tf.minimum(x, 10.0)) - 0.01)

        return tf.reduce_mean(tf.abs(rate(log_target) - rate(log_pred)))

    for shared, reference in ((lambda: logcosh(target - pred), lambda: tf_logcosh(target - pred)),
                              (lambda: rain_mae(target, pred), lambda: tf_rain_mae(target, pred))):
        with tf.GradientTape(persistent=True) as tape:
            ours, theirs = shared(), reference()
        assert float(ours) == float(theirs) and float(ours) > 0
        np.testing.assert_array_equal(tape.gradient(ours, pred).numpy(), tape.gradient(theirs, pred).numpy())


def test_width_16_and_options():
    assert round(build_rainnet(16).count_params() / 1e6, 2) == 1.96
    m = build_rainnet(4, upsampling="transpose")
    assert m.output_shape == (None, 128, 128, 1)
    cond = build_rainnet(4, conditioning_channels=1, residual=True)
    x = np.zeros((1, 128, 128, 4), np.float32)
    c = np.full((1, 128, 128, 1), 0.7, np.float32)
    # the residual head starts at zero: the untrained model returns its conditioning
    np.testing.assert_allclose(cond([x, c], training=False).numpy(), c, atol=1e-6)
    with pytest.raises(ValueError):
        build_rainnet(4, input_shape=(120, 120, 4))
    with pytest.raises(ValueError):
        build_rainnet(4, upsampling="bilinear")
