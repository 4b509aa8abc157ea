"""Recursive RainNet forecast: each +10 min prediction becomes the newest input, 6 times.

Works on batches of issue times at once. Inside, everything is on the network's scale
(ln(R + 0.01), 128 x 128 mirror-padded); each prediction is clipped at ln(0.01) (no rain),
cropped to 120 x 120 and mirror-padded again before it is fed back, so a fed-back frame
is exactly what the same rain rates would give as a fresh input.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np

from nowcast_core.extrapolation import extrapolate_batch
from nowcast_core.rainnet.preprocess import (
    NO_RAIN_LOG,
    crop_tf,
    from_model_outputs,
    pad,
    pad_tf,
    rain_rate_to_log,
    stack_scans,
    to_model_inputs,
)

_PREDICTORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def uses_conditioning(model) -> bool:
    """True if the model takes the extrapolation as a second input."""
    return len(model.inputs) == 2


def unroll(model, frames, conditioning, n_leads: int, training: bool = False):
    """Unroll the model over ``n_leads`` recursive steps (TensorFlow, differentiable).

    Parameters
    ----------
    model : keras.Model built by :func:`nowcast_core.rainnet.model.build_rainnet`.
    frames : tensor (batch, 128, 128, 4), ln(R + 0.01), padded, oldest scan first.
    conditioning : tensor (batch, 128, 128, >= n_leads) of padded extrapolations per lead,
        or None for a model without conditioning.
    n_leads : number of recursive 10-minute steps.
    training : passed to the model (dropout).

    Returns
    -------
    tensor (batch, 128, 128, n_leads): raw (unclipped) predictions per lead.
    """
    import tensorflow as tf

    x = frames
    outputs = []
    for k in range(n_leads):
        inputs = x if conditioning is None else [x, conditioning[..., k : k + 1]]
        y = tf.cast(model(inputs, training=training), tf.float32)
        outputs.append(y)
        newest = pad_tf(crop_tf(tf.maximum(y, NO_RAIN_LOG)))
        x = tf.concat([x[..., 1:], tf.cast(newest, x.dtype)], axis=-1)
    return tf.concat(outputs, axis=-1)


@functools.cache
def use_xla() -> bool:
    """Whether recursive forecasts are XLA-compiled by default: on a GPU, where fusing the six
    steps helps; not on the CPU, where oneDNN's convolutions already run at the matmul rate
    (``docs/BENCHMARKS.md``). ``NOWCAST_XLA=1`` / ``0`` overrides. Decided once per process."""
    import os

    import tensorflow as tf

    setting = os.environ.get("NOWCAST_XLA", "").strip().lower()
    if setting in ("1", "true", "yes", "0", "false", "no"):
        return setting in ("1", "true", "yes")
    return bool(tf.config.list_physical_devices("GPU"))


def _predictor(model, n_leads: int, jit_compile: bool):
    import tensorflow as tf

    cache = _PREDICTORS.setdefault(model, {})
    key = (n_leads, jit_compile)
    if key not in cache:
        if uses_conditioning(model):
            fn = tf.function(lambda f, c: unroll(model, f, c, n_leads), reduce_retracing=True, jit_compile=jit_compile)
        else:
            fn = tf.function(lambda f: unroll(model, f, None, n_leads), reduce_retracing=True, jit_compile=jit_compile)
        cache[key] = fn
    return cache[key]


def recursive_forecast(
    model,
    rain_rate_mm_h: np.ndarray,
    n_leads: int = 6,
    batch_size: int = 16,
    extrapolation_mm_h: np.ndarray | None = None,
    jit_compile: bool | None = None,
    smoothing_px_per_lead: float = 0.0,
) -> np.ndarray:
    """Forecast ``n_leads`` 10-minute steps for many issue times.

    Parameters
    ----------
    model : a RainNet keras.Model (with or without the conditioning input).
    rain_rate_mm_h : float array (n, 4, 120, 120), scans t-30 .. t, NaN = no data.
    n_leads : number of leads (t+10 .. t+10*n_leads).
    batch_size : issue times per network call.
    extrapolation_mm_h : optional precomputed conditioning (n, n_leads, 120, 120) in mm/h;
        computed with :func:`extrapolate_batch` when the model needs it and none is given.
    jit_compile : XLA-compile the six steps; None: :func:`use_xla`.
    smoothing_px_per_lead : smoothing of the computed conditioning (the model's
        :class:`~nowcast_core.rainnet.config.RainNetConfig`).

    Returns
    -------
    float32 array (n, n_leads, 120, 120): rain rates in mm/h, finite and >= 0.
    """
    x = np.asarray(rain_rate_mm_h, dtype=np.float32)
    n = len(x)
    out = np.zeros((n, n_leads) + x.shape[2:], dtype=np.float32)
    if n == 0:
        return out
    conditioned = uses_conditioning(model)
    if conditioned and extrapolation_mm_h is None:
        extrapolation_mm_h = extrapolate_batch(x, n_leads, smoothing_px_per_lead)
    predict = _predictor(model, n_leads, use_xla() if jit_compile is None else jit_compile)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        frames = to_model_inputs(x[start:stop])
        if conditioned:
            cond = pad(stack_scans(rain_rate_to_log(extrapolation_mm_h[start:stop, :n_leads])))
            y = predict(frames, cond)
        else:
            y = predict(frames)
        out[start:stop] = from_model_outputs(np.asarray(y))
    return out
