"""RainNet (Ayzel et al. 2020, GMD 13:2631): a U-Net that maps 4 radar scans to the next one.

Encoder: 4 pooling levels with ``base_filters`` x 1, 2, 4, 8, 16 filters, two 3 x 3
convolutions (ReLU, he_normal) per level, dropout 0.5 on the two deepest levels.
Decoder: upsampling (nearest neighbour as in the paper, or a transposed convolution),
concatenation with the encoder's skip tensor, two 3 x 3 convolutions per level, then a
2-filter 3 x 3 convolution and a 1 x 1 linear output. At ``base_filters=64`` the network
has 31.4 M parameters, as in the paper.

Optional conditioning (used by the shipped model, off by default): a second input of
``conditioning_channels`` fields is concatenated with the scans before the first
convolution, and with ``residual=True`` the output is added to the conditioning
field, so the network predicts a correction to it. The shipped model conditions on the
optical-flow extrapolation of the newest scan (see ``docs/MODEL_CARD.md``). Only standard
Keras layers are used, so the saved ``.keras`` file loads with ``safe_mode=True``.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from nowcast_core.io.scale import LOG_OFFSET


def _double_conv(x, filters: int, name: str):
    for i in (1, 2):
        x = layers.Conv2D(
            filters, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=f"{name}_conv{i}"
        )(x)
    return x


def _upsample(x, filters: int, upsampling: str, name: str):
    if upsampling == "nearest":
        return layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    if upsampling == "transpose":
        return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_up")(x)
    raise ValueError(f"upsampling must be 'nearest' or 'transpose', got {upsampling!r}")


def _unet(x, f: int, upsampling: str, dropout: float):
    """The U-Net body: 4 pooling levels down, 4 up with skip connections; f-channel features out."""
    skips = []
    for level, mult in enumerate((1, 2, 4, 8)):
        x = _double_conv(x, f * mult, f"enc{level + 1}")
        if level == 3:
            x = layers.Dropout(dropout, name="enc4_dropout")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    x = _double_conv(x, f * 16, "bottom")
    x = layers.Dropout(dropout, name="bottom_dropout")(x)

    for level, mult in zip((4, 3, 2, 1), (8, 4, 2, 1)):
        x = _upsample(x, f * mult, upsampling, f"dec{level}")
        x = layers.Concatenate(name=f"dec{level}_skip")([x, skips[level - 1]])
        x = _double_conv(x, f * mult, f"dec{level}")

    return x


def build_rainnet(
    base_filters: int = 64,
    input_shape: tuple[int, int, int] = (128, 128, 4),
    upsampling: str = "nearest",
    dropout: float = 0.5,
    conditioning_channels: int = 0,
    residual: bool = False,
    name: str | None = None,
    head_activation: str = "relu",
) -> keras.Model:
    """Build a RainNet U-Net.

    Parameters
    ----------
    base_filters : filters of the first level; levels use 1, 2, 4, 8, 16 times this.
    input_shape : (height, width, scans); height and width must be multiples of 16.
    upsampling : ``"nearest"`` (paper) or ``"transpose"`` (learned 2 x 2 transposed conv).
    dropout : dropout rate on the two deepest encoder levels.
    conditioning_channels : if > 0, a second input ``conditioning`` of shape
        (height, width, conditioning_channels) concatenated with the scans.
    residual : add the conditioning field to the output (needs exactly one conditioning
        channel); the output layer then starts at zero, so the untrained model returns it.
    name : model name (default ``rainnet<base_filters>``).
    head_activation : activation of the 2-filter head convolution: ``"relu"`` as published; with
        ``residual=True`` its zero-initialised output starves a ReLU head (the head dies and the
        network returns its conditioning), which ``"linear"`` avoids.

    Returns
    -------
    keras.Model
        Inputs ``frames`` (and ``conditioning``), output (height, width, 1) float32 on the
        same scale as the inputs (ln(R + 0.01) in this package).
    """
    height, width, _ = input_shape
    if height % 16 or width % 16:
        raise ValueError(f"input height and width must be multiples of 16, got {input_shape}")
    if residual and conditioning_channels != 1:
        raise ValueError("residual=True needs exactly one conditioning channel")
    f = base_filters
    frames = keras.Input(shape=input_shape, name="frames")
    inputs = [frames]
    x = frames
    if conditioning_channels:
        conditioning = keras.Input(shape=(height, width, conditioning_channels), name="conditioning")
        inputs.append(conditioning)
        x = layers.Concatenate(name="stack_inputs")([frames, conditioning])

    x = _unet(x, f, upsampling, dropout)
    x = layers.Conv2D(2, 3, padding="same", activation=head_activation, kernel_initializer="he_normal",
                      name="head_conv")(x)
    out = layers.Conv2D(
        1,
        1,
        activation="linear",
        kernel_initializer="zeros" if residual else "glorot_uniform",
        dtype="float32",
        name="head_output",
    )(x)
    if residual:
        base = layers.Activation("linear", dtype="float32", name="conditioning_float32")(conditioning)
        out = layers.Add(dtype="float32", name="residual_add")([out, base])
    return keras.Model(inputs=inputs, outputs=out, name=name or f"rainnet{f}")


def build_direct_rainnet(
    base_filters: int = 16,
    n_leads: int = 6,
    thresholds_mm_h: tuple[float, ...] = (1.0, 5.0),
    upsampling: str = "nearest",
    dropout: float = 0.5,
    logit_softness: float = 0.5,
    growth_input: bool = False,
    name: str | None = None,
) -> keras.Model:
    """The six leads at once: a RainNet U-Net with a rain-rate and an exceedance head per lead.

    Inputs ``frames`` (128, 128, 4) and ``conditioning`` (128, 128, ``n_leads``): the scans and
    the extrapolation for every lead, on ln(R + 0.01). The output (128, 128, ``n_leads`` x (1 +
    thresholds)) holds, per lead, ln(R + 0.01) (the conditioning plus the network's correction) and
    then, threshold by threshold, the logit of P(R >= threshold) (the conditioning's distance to the
    threshold over ``logit_softness`` plus the network's correction). Both corrections start at zero,
    so the untrained network returns its conditioning. No recursion: each lead has its own channels.

    With ``growth_input`` a third input ``growth`` (128, 128, ``n_leads``) holds how fast the rain grew
    along its motion, carried to each lead (:func:`nowcast_core.extrapolation.growth_tendency`): the
    U-Net reads it with the rest, and the heads' 1 x 1 corrections also read it directly, so a weight
    per lead (what the bench's ceiling chose) is one linear step away.
    """
    height, width = 128, 128
    f = base_filters
    frames = keras.Input(shape=(height, width, 4), name="frames")
    conditioning = keras.Input(shape=(height, width, n_leads), name="conditioning")
    inputs = [frames, conditioning]
    if growth_input:
        inputs.append(keras.Input(shape=(height, width, n_leads), name="growth"))
    x = layers.Concatenate(name="stack_inputs")(inputs)
    x = _unet(x, f, upsampling, dropout)
    if growth_input:
        x = layers.Concatenate(name="features_and_growth")([x, inputs[-1]])
    base = layers.Activation("linear", dtype="float32", name="conditioning_float32")(conditioning)
    rate = layers.Conv2D(n_leads, 1, kernel_initializer="zeros", dtype="float32", name="rate_correction")(x)
    rate = layers.Add(dtype="float32", name="rate_log")([rate, base])
    outputs = [rate]
    for i, thr in enumerate(thresholds_mm_h):
        level = math.log(thr + LOG_OFFSET)
        prior = layers.Rescaling(1.0 / logit_softness, offset=-level / logit_softness, dtype="float32",
                                 name=f"prior_logit_{i}")(base)
        delta = layers.Conv2D(n_leads, 1, kernel_initializer="zeros", dtype="float32", name=f"logit_correction_{i}")(x)
        outputs.append(layers.Add(dtype="float32", name=f"exceedance_logit_{i}")([prior, delta]))
    out = layers.Concatenate(dtype="float32", name="forecast")(outputs)
    return keras.Model(inputs=inputs, outputs=out, name=name or f"rainnet{f}-direct{'-growth' if growth_input else ''}")


def average_members(members: list, name: str | None = None) -> keras.Model:
    """One network whose output is the mean of ``members``' outputs (networks of one configuration,
    trained with different seeds): for a direct RainNet the mean of their ln(R + 0.01) and of their
    exceedance logits, so a geometric mean of the rates and a logit mean of the probabilities. The
    members stay whole inside it (layers ``member_0``, ``member_1``, ...), so each can be taken out and
    fine-tuned alone; a single member is returned as it is."""
    if len(members) == 1:
        return members[0]
    name = name or f"{members[0].name}-x{len(members)}"
    inputs = [keras.Input(shape=tensor.shape[1:], name=tensor.name.split(":")[0]) for tensor in members[0].inputs]
    for k, member in enumerate(members):
        member.name = f"member_{k}"
    out = layers.Average(dtype="float32", name="member_average")([member(inputs) for member in members])
    return keras.Model(inputs=inputs, outputs=out, name=name)
