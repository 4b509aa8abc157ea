"""The direct RainNet: the six leads at once, with a rain-rate and an exceedance head per lead.

Design (issue 10; network :func:`nowcast_core.rainnet.model.build_direct_rainnet`): the U-Net
reads the four scans and the extrapolation for every lead, and corrects, lead by lead, both the
extrapolation's rain rate and its probability of reaching each threshold of
:data:`THRESHOLDS_MM_H`. Trained with Keras ``fit`` on a loss that rewards each head for its own
job: logcosh and MAE (mm/h) for the rate, which favour a sober, median-like field, and binary
cross-entropy for the exceedances, which favours calibrated probabilities. Neither alone answers
"is heavy rain coming": a median field blurs the storm away, and a probability is not a rain rate.
The forecast is therefore the rate field made to agree with the exceedance decisions
(:func:`categorical_rates`): where the network gives P(R >= t) at least the decision probability
chosen for that threshold and lead on the training data (:func:`choose_decision_probability`,
the probability that maximises CSI there), the rate is raised to t, and elsewhere lowered below t.
Under the decision rule ``heads-or-rate`` (:data:`DECISION_RULES`) a pixel whose rate head already
reaches t stays there too: the decisions add the heavy rain a median-like rate misses and erase none
it forecasts. With core probabilities (``RainNetConfig.core_probability``) a pixel where the
extrapolation *before smoothing* reaches t is put there as well once P(R >= t) reaches the (lower) core
probability: the smoothing that steadies the network's input erases small heavy cores, and the
network's heads, confident on the events they were trained on, cannot choose such a probability there;
it is chosen on events held out of training (:func:`choose_core_probability`).

Everything here uses ``keras.ops`` and NumPy only, so the same code trains on any Keras backend
(TensorFlow in the product; JAX on a GPU machine without TensorFlow).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from nowcast_core.contract import N_INPUTS
from nowcast_core.io.scale import LOG_OFFSET
from nowcast_core.rainnet.preprocess import (
    crop,
    crop_tf,
    from_model_outputs,
    log_to_rain_rate,
    pad,
    to_model_inputs,
    unstack_scans,
)

#: The exceedance heads' thresholds (mm/h): the issue's heavy-rain levels.
THRESHOLDS_MM_H = (1.0, 5.0)
#: Candidate decision probabilities.
DECISION_GRID = tuple(round(p, 2) for p in np.arange(0.05, 0.951, 0.05))
#: How far below a threshold a "no" decision puts the rate (mm/h).
BELOW_THRESHOLD_MM_H = 1e-3
#: How a pixel is put at or above a threshold t. ``heads``: where its exceedance head's probability
#: reaches the decision probability, and nowhere else (a rate head at or above t is lowered below it).
#: ``heads-or-rate``: there, and also where the rate head already is at or above t.
DECISION_RULES = ("heads", "heads-or-rate")
#: Candidate core probabilities (:func:`choose_core_probability`); None: no cores at that threshold.
CORE_CHOICES = (None, 0.05, 0.1, 0.15, 0.2, 0.25)


def split_outputs(output: np.ndarray, n_leads: int) -> tuple[np.ndarray, np.ndarray]:
    """Network output (n, 128, 128, L x (1 + thresholds)) -> rate (n, L, 120, 120) mm/h and exceedance
    probabilities (n, thresholds, L, 120, 120)."""
    y = np.asarray(output, np.float32)
    logits = unstack_scans(crop(y[..., n_leads:]))
    logits = logits.reshape(len(y), -1, n_leads, *logits.shape[-2:])
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))
    return from_model_outputs(y[..., :n_leads]), prob.astype(np.float32)


def split_inputs(frames: np.ndarray, conditioning: np.ndarray, growth: bool) -> list:
    """A direct RainNet's inputs from padded scans (b, 128, 128, 4) and padded conditioning channels: the
    extrapolation for every lead, then, with ``growth`` (a network with a ``growth`` input), the growth."""
    if growth:
        n_leads = conditioning.shape[-1] // 2
        return [frames, conditioning[..., :n_leads], conditioning[..., n_leads:]]
    return [frames, conditioning]


def network_inputs(model, frames: np.ndarray, conditioning: np.ndarray) -> list:
    """:func:`split_inputs` for ``model``."""
    return split_inputs(frames, conditioning, len(model.inputs) == 3)


def conditioning_channels(extrapolation_mm_h: np.ndarray, growth: np.ndarray | None = None) -> np.ndarray:
    """A direct RainNet's conditioning (n, 120, 120, L or 2 L): the extrapolation (n, L, 120, 120) on
    ln(R + 0.01), then with ``growth`` (n, L, 120, 120) the growth tendency as it is."""
    from nowcast_core.rainnet.preprocess import rain_rate_to_log, stack_scans

    channels = stack_scans(rain_rate_to_log(extrapolation_mm_h))
    return channels if growth is None else np.concatenate([channels, stack_scans(growth)], axis=-1)


def direct_outputs(model, rain_rate_mm_h: np.ndarray, conditioning_log: np.ndarray,
                   batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(rate mm/h (n, L, 120, 120), exceedance probabilities (n, thresholds, L, 120, 120)) of a direct
    RainNet for scans ``rain_rate_mm_h`` (n, 4, 120, 120) and their conditioning (n, 120, 120, L or 2 L;
    :func:`conditioning_channels`)."""
    n_leads = conditioning_log.shape[-1] // (2 if len(model.inputs) == 3 else 1)
    rates, probs = [], []
    for start in range(0, len(rain_rate_mm_h), batch_size):
        frames = to_model_inputs(rain_rate_mm_h[start : start + batch_size])
        cond = pad(np.asarray(conditioning_log[start : start + batch_size], np.float32))
        rate, prob = split_outputs(np.asarray(model(network_inputs(model, frames, cond), training=False)), n_leads)
        rates.append(rate)
        probs.append(prob)
    return np.concatenate(rates), np.concatenate(probs)


def _check_rule(rule: str) -> None:
    if rule not in DECISION_RULES:
        raise ValueError(f"unknown decision rule {rule!r}; known: {', '.join(DECISION_RULES)}")


def _decided(rate, probability, i, thr, decision, rule, sharp, core):
    """Where threshold ``thr`` (head ``i``) is reached by the decisions, before the nesting."""
    yes = probability[:, i] >= np.asarray(decision[i], np.float32)[None, :, None, None]
    if rule == "heads-or-rate":
        yes |= rate >= thr
    if core is not None:
        yes |= (sharp >= thr) & (probability[:, i] >= core)
    return yes


def _cores(core_probability, n_thresholds: int, sharp_mm_h) -> tuple:
    cores = tuple(core_probability) or (None,) * n_thresholds
    if len(cores) != n_thresholds:
        raise ValueError(f"{len(cores)} core probabilities for {n_thresholds} thresholds")
    if sharp_mm_h is None and any(c is not None for c in cores):
        raise ValueError("core probabilities need the unsmoothed extrapolation (sharp_mm_h)")
    return cores


def categorical_rates(rate_mm_h: np.ndarray, probability: np.ndarray, thresholds_mm_h, decision,
                      rule: str = "heads", sharp_mm_h: np.ndarray | None = None, core_probability=()) -> np.ndarray:
    """The rate field made to agree with the exceedance decisions.

    Parameters
    ----------
    rate_mm_h : (n, L, H, W) rate head.
    probability : (n, thresholds, L, H, W) exceedance heads.
    thresholds_mm_h : ascending thresholds of the heads.
    decision : ``decision[i][k]``: P(R >= threshold i) from which lead k is put at or above it.
    rule : :data:`DECISION_RULES`; with ``heads-or-rate`` a rate head at or above a threshold counts as
        a yes too.
    sharp_mm_h : (n, L, H, W) the unsmoothed extrapolation, needed with ``core_probability``.
    core_probability : per threshold, the probability from which a pixel where ``sharp_mm_h`` reaches
        it counts as a yes too (None: not at that threshold); empty: none.

    A pixel is at or above threshold i where it is decided so and it is at or above every lower
    threshold (so the categories nest). There the rate is raised to the threshold if it was below;
    elsewhere it is lowered to just below the threshold if it was above.
    """
    _check_rule(rule)
    cores = _cores(core_probability, len(thresholds_mm_h), sharp_mm_h)
    rate = np.asarray(rate_mm_h, np.float32)
    out = rate.copy()
    above = np.ones(out.shape, bool)
    for i, thr in enumerate(thresholds_mm_h):
        above &= _decided(rate, probability, i, thr, decision, rule, sharp_mm_h, cores[i])
        out = np.where(above, np.maximum(out, thr), np.minimum(out, thr - BELOW_THRESHOLD_MM_H))
    return np.maximum(out, 0.0)


def decision_counts(probability: np.ndarray, observed_mm_h: np.ndarray, thresholds_mm_h,
                    grid=DECISION_GRID, rate_mm_h: np.ndarray | None = None, rule: str = "heads") -> np.ndarray:
    """(hits, misses, false alarms) per (threshold, lead, grid probability): int64 (thresholds, L, grid, 3).

    Under ``rule`` ``heads-or-rate`` a pixel whose rate (``rate_mm_h``, (n, L, H, W)) reaches the threshold
    counts as a yes at every grid probability. Pixels without an observation (NaN) are left out."""
    _check_rule(rule)
    if rule == "heads-or-rate" and rate_mm_h is None:
        raise ValueError("the heads-or-rate rule needs the rate head (rate_mm_h)")
    obs = np.asarray(observed_mm_h)
    valid = np.isfinite(obs)
    out = np.zeros((len(thresholds_mm_h), obs.shape[1], len(grid), 3), np.int64)
    for i, thr in enumerate(thresholds_mm_h):
        wet = np.where(valid, obs >= thr, False)
        for k in range(obs.shape[1]):
            o, v, p = wet[:, k], valid[:, k], probability[:, i, k]
            rate_yes = np.asarray(rate_mm_h)[:, k] >= thr if rule == "heads-or-rate" else False
            for g, tau in enumerate(grid):
                f = ((p >= tau) | rate_yes) & v
                out[i, k, g] = (np.count_nonzero(f & o), np.count_nonzero(o & ~f), np.count_nonzero(f & ~o))
    return out


def decision_csi(counts: np.ndarray) -> np.ndarray:
    """CSI of :func:`decision_counts` (..., 3): hits over hits, misses and false alarms; 0 where all are 0."""
    counts = np.asarray(counts)
    return counts[..., 0] / np.maximum(counts.sum(axis=-1), 1)


def choose_decision_probability(counts: np.ndarray, grid=DECISION_GRID) -> tuple:
    """Per threshold and lead, the grid probability with the highest CSI in ``counts``
    (:func:`decision_counts`); 0.5 where the threshold was never reached nor forecast."""
    denom = counts.sum(axis=-1)
    csi = np.where(denom > 0, decision_csi(counts), -1.0)
    best = np.asarray(grid)[np.argmax(csi, axis=-1)]
    best = np.where(denom.max(axis=-1) > 0, best, 0.5)
    return tuple(tuple(float(v) for v in row) for row in best)


def direct_loss(thresholds_mm_h, n_leads: int, logcosh_weight: float = 1.0, rain_mae_weight: float = 0.0,
                exceedance_weight: float = 1.0):
    """The training loss on the central 120 x 120 pixels: logcosh (ln(R + 0.01)) and MAE (mm/h) of the
    rate head plus the mean binary cross-entropy of the exceedance heads (``keras.ops``, any backend).

    ``y_true`` is the observed ln(R + 0.01) per lead, (b, 120, 120, L)."""
    from keras import ops

    from nowcast_core.rainnet.losses import logcosh, rain_mae

    levels = [math.log(t + LOG_OFFSET) for t in thresholds_mm_h]

    def loss(y_true, y_pred):
        y = crop_tf(y_pred)  # plain slicing: any backend's tensor
        target = ops.cast(y_true, "float32")
        log_rate = y[..., :n_leads]
        total = logcosh_weight * logcosh(log_rate - target)
        if rain_mae_weight:
            total = total + rain_mae_weight * rain_mae(target, log_rate)
        if exceedance_weight and levels:
            bce = 0.0
            for i, level in enumerate(levels):
                logits = y[..., n_leads * (i + 1) : n_leads * (i + 2)]
                labels = ops.cast(target >= level, "float32")
                bce = bce + ops.mean(ops.binary_crossentropy(labels, logits, from_logits=True))
            total = total + exceedance_weight * bce / len(levels)
        return total

    return loss


def _flip_rotate(x: np.ndarray, rng) -> np.ndarray:
    """A random 90-degree rotation and left-right flip of a (120, 120, C) sample, the same for all channels."""
    x = np.rot90(x, rng.integers(4))
    return x[:, ::-1] if rng.integers(2) else x


def scale_intensity(log_rain: np.ndarray, factor: float) -> np.ndarray:
    """Channels on ln(R + 0.01) with every rain rate multiplied by ``factor``."""
    from nowcast_core.rainnet.preprocess import log_to_rain_rate, rain_rate_to_log

    return rain_rate_to_log(log_to_rain_rate(log_rain) * np.float32(factor))


def _batches(samples, batch_size: int, augment: bool, seed: int, growth: bool = False,
             intensity_log_range: float = 0.0):
    """A Keras ``PyDataset`` of shuffled, randomly flipped and rotated batches (NumPy); with ``growth``
    the conditioning's second half is the network's ``growth`` input. With ``intensity_log_range`` a > 0
    every sample's rain rates (scans, targets and extrapolation alike) are also multiplied by a random
    factor exp(U(-a, a)): how rain moves, grows and decays must then be learned apart from how strong it
    is. The growth tendency is left as it is: a difference of ln(1 + R), nearly unchanged by a factor
    where the rain is heavy."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = self._order()

        def _order(self):
            return np.random.default_rng([seed, self.epoch]).permutation(len(samples))

        def __len__(self):
            return math.ceil(len(samples) / batch_size)

        def __getitem__(self, index):
            pick = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
            data = np.concatenate([samples.frames[pick], samples.conditioning[pick]], axis=-1)
            n_frames = samples.frames.shape[-1]
            if augment:
                rng = np.random.default_rng([seed, self.epoch, index])
                data = np.stack([_flip_rotate(x, rng) for x in data])
                if intensity_log_range:
                    n_rain = n_frames + samples.n_leads  # scans, targets, then the extrapolation per lead
                    for x in data:
                        x[..., :n_rain] = scale_intensity(
                            x[..., :n_rain], math.exp(rng.uniform(-intensity_log_range, intensity_log_range)))
            inputs = tuple(split_inputs(pad(data[..., :N_INPUTS]), pad(data[..., n_frames:]), growth))
            return inputs, np.ascontiguousarray(data[..., N_INPUTS:n_frames])

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return Batches()


def core_counts(rate_mm_h: np.ndarray, probability: np.ndarray, sharp_mm_h: np.ndarray, observed_mm_h: np.ndarray,
                thresholds_mm_h, decision, rule: str, choices=CORE_CHOICES) -> np.ndarray:
    """(hits, misses, false alarms) per (threshold, lead, core choice) of the decisions (``decision``,
    ``rule``) with each candidate core probability (:data:`CORE_CHOICES`): int64 (thresholds, L, choices, 3).
    Per threshold on its own, as :func:`decision_counts`; pixels without an observation left out."""
    _check_rule(rule)
    obs = np.asarray(observed_mm_h)
    valid = np.isfinite(obs)
    out = np.zeros((len(thresholds_mm_h), obs.shape[1], len(choices), 3), np.int64)
    for i, thr in enumerate(thresholds_mm_h):
        wet = np.where(valid, obs >= thr, False)
        for c, core in enumerate(choices):
            f = _decided(rate_mm_h, probability, i, thr, decision, rule, sharp_mm_h, core) & valid
            for k in range(obs.shape[1]):
                o, y = wet[:, k], f[:, k]
                out[i, k, c] = (np.count_nonzero(y & o), np.count_nonzero(o & ~y), np.count_nonzero(y & ~o))
    return out


def choose_core_probability(counts: np.ndarray, choices=CORE_CHOICES) -> tuple:
    """Per threshold, the core choice with the highest CSI averaged over the leads in ``counts``
    (:func:`core_counts`, summed over events held out of the network's training); on a tie the earlier
    choice (so none before any)."""
    csi = decision_csi(np.asarray(counts)).mean(axis=1)  # (thresholds, choices)
    return tuple(choices[int(np.argmax(row))] for row in csi)


def choose_decisions(model, samples, thresholds_mm_h, rule: str = "heads") -> tuple:
    """The decision probabilities (``[threshold][lead]``, :func:`choose_decision_probability`) of a trained
    direct RainNet under the decision ``rule``, on its own training ``samples`` (with their conditioning)."""
    inputs = log_to_rain_rate(unstack_scans(samples.frames[..., :N_INPUTS]))
    observed = log_to_rain_rate(unstack_scans(samples.frames[..., N_INPUTS:]))
    counts = np.zeros((len(thresholds_mm_h), samples.n_leads, len(DECISION_GRID), 3), np.int64)
    for start in range(0, len(inputs), 64):
        sl = slice(start, start + 64)
        rate, prob = direct_outputs(model, inputs[sl], samples.conditioning[sl])
        counts += decision_counts(prob, observed[sl], thresholds_mm_h, rate_mm_h=rate, rule=rule)
    return choose_decision_probability(counts)


def train_direct(train_samples, val_samples, config, initial_model=None):
    """Train a direct RainNet (``config.direct``): fixed epochs of Keras ``fit``, then the decision
    probabilities chosen on the training samples under ``config.decision_rule`` (:func:`choose_decisions`).
    Returns (model, history) like :func:`nowcast_core.rainnet.train.train`, the decision probabilities in
    ``history["decision_probability"]``
    (they belong in the saved :class:`~nowcast_core.rainnet.config.RainNetConfig`); validation samples, if
    any, are only scored. With ``config.members`` above 1, that many networks are trained one after the
    other (seeds ``config.seed``, ``config.seed + 1``, ...; each from its member of ``initial_model`` when
    fine-tuning) and the model is their mean (:func:`~nowcast_core.rainnet.model.average_members`), whose
    decisions are then chosen."""
    from nowcast_core.rainnet.model import average_members

    fits = [_fit_direct(train_samples, val_samples, replace(config, seed=config.seed + k),
                        initial_model if initial_model is None or config.members == 1
                        else initial_model.get_layer(f"member_{k}"))
            for k in range(config.members)]
    history = fits[0][1]
    members = [member for member, _ in fits]
    if config.members > 1:
        history["epochs"] = [{**record, "member": k} for k, (_, h) in enumerate(fits) for record in h["epochs"]]
        members = [_uncompiled(member, config) for member in members]  # the saved mean holds no loss
    model = average_members(members)
    history["parameters"] = int(model.count_params())
    thresholds = tuple(config.model_config().exceedance_thresholds_mm_h)
    decision = choose_decisions(model, train_samples, thresholds, config.decision_rule)
    history["decision_probability"] = [list(row) for row in decision]
    if val_samples is not None and len(val_samples):
        from nowcast_core.extrapolation import direct_inputs
        from nowcast_core.verification.scores import scores_per_lead

        inputs = log_to_rain_rate(unstack_scans(val_samples.frames[..., :N_INPUTS]))
        sharp = direct_inputs(inputs, train_samples.n_leads, growth=False, sharp=True).sharp \
            if config.core_probability else None
        history["final_validation"] = {"rainnet": scores_per_lead(
            direct_forecast(model, config.model_config(decision), inputs, val_samples.conditioning, sharp_mm_h=sharp),
            log_to_rain_rate(unstack_scans(val_samples.frames[..., N_INPUTS:])))}
    return model, history


def _uncompiled(model, config):
    """A fresh, uncompiled network of ``config`` (one member) with ``model``'s weights."""
    fresh = replace(config.model_config(), members=1).build()
    fresh.set_weights(model.get_weights())
    return fresh


def _fit_direct(train_samples, val_samples, config, initial_model=None):
    """One direct network of ``config`` (``members`` aside) trained by Keras ``fit`` with ``config.seed``."""
    import keras

    if train_samples.conditioning is None:
        raise ValueError("the direct RainNet needs the extrapolation (conditioning) of every sample")
    channels = train_samples.n_leads * (2 if config.growth_input else 1)
    if train_samples.conditioning.shape[-1] != channels:
        raise ValueError(f"the samples' conditioning has {train_samples.conditioning.shape[-1]} channels, the network "
                         f"needs {channels} (growth_input={config.growth_input})")
    keras.utils.set_random_seed(config.seed)
    model_config = config.model_config()
    model = replace(model_config, members=1).build()
    if initial_model is not None:
        model.set_weights(initial_model.get_weights())
    n_leads = train_samples.n_leads
    thresholds = tuple(model_config.exceedance_thresholds_mm_h)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=direct_loss(thresholds, n_leads, config.logcosh_weight, config.rain_mae_weight,
                                   config.exceedance_weight))
    history = {"epochs": [], "parameters": int(model.count_params()), "n_train_samples": len(train_samples),
               "n_val_samples": 0 if val_samples is None else len(val_samples),
               "train_events": sorted(set(train_samples.events)),
               "val_events": [] if val_samples is None else sorted(set(val_samples.events))}

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            record = {"epoch": epoch + 1, "stage": "direct", "loss": float(logs["loss"]),
                      "seconds": round(time.perf_counter() - self.started, 1)}
            history["epochs"].append(record)
            if config.progress:
                print(f"epoch {epoch + 1} (direct) loss {record['loss']:.4f} [{record['seconds']:.0f} s]", flush=True)

    model.fit(_batches(train_samples, config.batch_size, config.augment, config.seed, config.growth_input,
                       config.intensity_log_range),
              epochs=config.epochs,
              verbose=0, callbacks=[Record()])
    return model, history


def direct_forecast(model, config, rain_rate_mm_h: np.ndarray, conditioning_log: np.ndarray,
                    batch_size: int = 16, sharp_mm_h: np.ndarray | None = None) -> np.ndarray:
    """The direct RainNet's forecast (n, L, 120, 120) mm/h: its rate head made to agree with its
    exceedance decisions (:func:`categorical_rates`); ``sharp_mm_h``, the unsmoothed extrapolation, for
    a configuration with core probabilities."""
    rate, prob = direct_outputs(model, rain_rate_mm_h, conditioning_log, batch_size)
    return categorical_rates(rate, prob, config.exceedance_thresholds_mm_h, config.decision_probability,
                             config.decision_rule, sharp_mm_h, config.core_probability)
