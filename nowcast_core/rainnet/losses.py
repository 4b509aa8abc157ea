"""The loss terms both RainNet trainers share, in ``keras.ops`` (any Keras backend).

On TensorFlow these are the same operations, in the same order, as the TensorFlow expressions the
recursive model bundled before 2026-11-30 was trained with (``tests/test_rainnet_model.py`` checks the
values are identical), so ``nowcast train --recipe recursive`` still reproduces it bit for bit.
"""

from __future__ import annotations

import math

from nowcast_core.io.scale import LOG_OFFSET


def logcosh(error):
    """Numerically stable mean log(cosh(error))."""
    from keras import ops

    a = ops.abs(error)
    return ops.mean(a + ops.softplus(-2.0 * a) - math.log(2.0))


def log_to_rate(x):
    """ln(R + 0.01) -> R (mm/h), at least 0, the exponent capped at 10 (22,000 mm/h)."""
    from keras import ops

    return ops.relu(ops.exp(ops.minimum(x, 10.0)) - LOG_OFFSET)


def rain_mae(log_target, log_pred):
    """Mean absolute error in mm/h between two ln(R + 0.01) tensors (prediction clipped at 0 mm/h)."""
    from keras import ops

    return ops.mean(ops.abs(log_to_rate(log_target) - log_to_rate(log_pred)))
