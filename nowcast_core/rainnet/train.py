"""Training RainNet: data in, history out.

Recipe (Ayzel et al. 2020, adapted): ln(R + 0.01) inputs and targets, logcosh loss, Adam,
random flips and 90-degree rotations, early stopping on the validation loss with the best
weights restored. Two stages:

1. ``epochs`` of one-step training. Each sample gives a one-step problem at a random lead k
   (observed scans as inputs, the scan 10k minutes after the issue time as target; with
   conditioning, the optical-flow extrapolation for lead k as the second input).
2. ``unroll_epochs`` of multi-step fine-tuning: the loss is summed over ``unroll_steps``
   recursive steps from the issue time, each prediction fed back as the newest input, so the
   network learns from its own inputs at later leads (counters the fading of recursive use).

Validation is always the full recursive 6-lead forecast of every validation sample; its
mean logcosh over the leads is the early-stopping loss, and CSI / MAE per lead are recorded.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nowcast_core.contract import N_INPUTS, N_LEADS
from nowcast_core.rainnet import report_path_for
from nowcast_core.rainnet.config import TrainConfig, save_model  # noqa: F401 - TrainConfig re-exported
from nowcast_core.rainnet.dataset import (
    Samples,
    event_name,
    make_tf_dataset,
    samples_from_competition,
    samples_from_folders,
    split_by_event,
)
from nowcast_core.rainnet.direct import THRESHOLDS_MM_H, train_direct
from nowcast_core.rainnet.losses import logcosh, rain_mae
from nowcast_core.rainnet.preprocess import LOG_OFFSET, crop_tf, log_to_rain_rate, pad
from nowcast_core.verification.scores import scores_per_lead


def configure_hardware(threads: int | None = None) -> dict:
    """Use the GPU when there is one (mixed precision), else the CPU with ``threads`` threads.

    Must run before TensorFlow executes anything; later calls keep the first setting.
    Returns a description stored in the training report.
    """
    from nowcast_core.rainnet import import_keras

    keras = import_keras()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already initialised
    if gpus:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return {
        "device": "GPU" if gpus else "CPU",
        "gpus": [g.name for g in gpus],
        "mixed_precision": bool(gpus),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


#: Thresholds (mm/h) and window sizes (pixels) of the neighbourhood loss term.
FSS_LOSS_THRESHOLDS_MM_H = (1.0, 5.0)
FSS_LOSS_WINDOWS_PX = (1, 5)
#: Width (on ln(R + 0.01)) of the sigmoid that makes "rain rate >= threshold" differentiable.
FSS_LOSS_SOFTNESS = 0.25


def fss_loss(log_target, log_pred):
    """1 - FSS, averaged over :data:`FSS_LOSS_THRESHOLDS_MM_H` x :data:`FSS_LOSS_WINDOWS_PX` (TensorFlow).

    The forecast's exceedance is a sigmoid of the distance to the threshold on ln(R + 0.01), the
    observed one is exact; fractions are window means (stride 1). A forecast that blurs heavy
    rain away scores 1 at 5 mm/h whatever its pixel errors, so this term rewards keeping and
    placing rain above the thresholds, which a pixel-wise loss does not."""
    import tensorflow as tf

    terms = []
    for thr in FSS_LOSS_THRESHOLDS_MM_H:
        level = math.log(thr + LOG_OFFSET)
        f = tf.sigmoid((log_pred - level) / FSS_LOSS_SOFTNESS)
        o = tf.cast(log_target >= level, f.dtype)
        for size in FSS_LOSS_WINDOWS_PX:
            if size > 1:
                f_n = tf.nn.avg_pool2d(f, size, 1, "SAME")
                o_n = tf.nn.avg_pool2d(o, size, 1, "SAME")
            else:
                f_n, o_n = f, o
            mse = tf.reduce_sum(tf.square(f_n - o_n))
            ref = tf.reduce_sum(tf.square(f_n)) + tf.reduce_sum(tf.square(o_n))
            terms.append(mse / (ref + 1e-3))
    return tf.add_n(terms) / len(terms)


def _unroll_loss(model, batch, n_steps: int, training: bool, rain_mae_weight: float = 0.0,
                 fss_weight: float = 0.0, logcosh_weight: float = 1.0):
    from nowcast_core.rainnet.recursive import unroll

    frames = batch["frames"]
    cond = batch.get("conditioning")
    y = unroll(model, frames[..., :N_INPUTS], cond, n_steps, training=training)
    target = crop_tf(frames[..., N_INPUTS : N_INPUTS + n_steps])
    loss = logcosh_weight * logcosh(target - crop_tf(y))
    if rain_mae_weight:
        loss = loss + rain_mae_weight * rain_mae(target, crop_tf(y))
    if fss_weight:
        loss = loss + fss_weight * fss_loss(target, crop_tf(y))
    return loss, y


def skill_score(skill: list[dict]) -> float:
    """One number for model selection (higher is better): mean CSI at 1 mm/h over the leads
    minus the mean MAE relative to the mean observed rain rate."""
    csi1 = np.nanmean([np.nan if r["csi_1"] is None else r["csi_1"] for r in skill])
    rel_mae = np.mean([r["mae_mm_h"] for r in skill]) / max(np.mean([r["mean_observed_mm_h"] for r in skill]), 1e-6)
    return float(csi1 - rel_mae)


def evaluate(
    model, samples: Samples, batch_size: int = 16, rain_mae_weight: float = 0.0, fss_weight: float = 0.0,
    logcosh_weight: float = 1.0,
) -> tuple[float, list[dict]]:
    """Recursive forecast of all leads of ``samples``: (mean training loss, skill per lead)."""
    import tensorflow as tf

    n_leads = samples.n_leads
    step = tf.function(lambda b: _unroll_loss(model, b, n_leads, False, rain_mae_weight, fss_weight, logcosh_weight),
                       reduce_retracing=True)
    losses, weights, preds = [], [], []
    for start in range(0, len(samples), batch_size):
        sl = slice(start, start + batch_size)
        batch = {"frames": tf.constant(pad(samples.frames[sl]))}
        if samples.conditioning is not None:
            batch["conditioning"] = tf.constant(pad(samples.conditioning[sl]))
        loss, y = step(batch)
        losses.append(float(loss))
        weights.append(len(samples.frames[sl]))
        preds.append(np.asarray(crop_tf(y)))
    pred_mm_h = log_to_rain_rate(np.moveaxis(np.concatenate(preds), -1, 1))
    obs_mm_h = log_to_rain_rate(np.moveaxis(samples.frames[..., N_INPUTS:], -1, 1))
    return float(np.average(losses, weights=weights)), scores_per_lead(pred_mm_h, obs_mm_h)


def baseline_skill(samples: Samples) -> dict:
    """Skill per lead of persistence and pysteps extrapolation (as the forecasters of the same
    names compute them) on ``samples``, and of the conditioning extrapolation alone (key
    ``conditioning``) if the samples carry one."""
    from nowcast_core import extrapolation

    inputs = log_to_rain_rate(np.moveaxis(samples.frames[..., :N_INPUTS], -1, 1))
    obs = log_to_rain_rate(np.moveaxis(samples.frames[..., N_INPUTS:], -1, 1))
    n = samples.n_leads
    out = {"persistence": scores_per_lead(extrapolation.persistence(inputs, n), obs),
           "pysteps": scores_per_lead(extrapolation.extrapolate_batch(inputs, n, fill_inflow=False), obs)}
    if samples.conditioning is not None:
        out["conditioning"] = scores_per_lead(log_to_rain_rate(np.moveaxis(samples.conditioning, -1, 1)), obs)
    return out


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
    )


def _fmt_skill(skill: list[dict]) -> str:
    return " ".join(f"+{r['lead_minutes']}:{r['csi_1'] or 0:.2f}/{r['mae_mm_h']:.2f}" for r in skill)


def train(
    train_samples: Samples,
    val_samples: Samples | None,
    config: TrainConfig | None = None,
    initial_model=None,
):
    """Train a RainNet on samples.

    Parameters
    ----------
    train_samples : training samples (see :mod:`nowcast_core.rainnet.dataset`).
    val_samples : validation samples (other events), or None / empty to train without
        early stopping.
    config : :class:`TrainConfig`. ``monitor`` is ``"val_loss"`` (early stopping on the
        validation loss) or ``"val_score"`` (on :func:`skill_score`, higher is better).
    initial_model : optional keras.Model (same architecture) whose weights are the start
        (fine-tuning); default a fresh network.

    Returns
    -------
    (keras.Model, dict)
        The model (best validation weights, not compiled, no optimizer state) and the
        history: ``epochs`` (per epoch: stage, loss, val_loss, val_score, val_skill per
        lead, seconds), ``best`` epoch per stage, ``kept_stage`` (the stage whose best weights
        are returned: multi-step fine-tuning is kept only if it beat the one-step stage on
        the monitored value), the config and the hardware.
    """
    import keras
    import tensorflow as tf

    from nowcast_core.rainnet import import_keras

    import_keras()
    config = config or TrainConfig()
    hardware = configure_hardware()
    if config.direct:
        model, history = train_direct(train_samples, val_samples, config, initial_model)
        history.update(config=asdict(config), hardware=hardware)
        return model, history
    if config.intensity_log_range:
        raise ValueError("intensity_log_range is a setting of the direct RainNet (direct=True)")
    keras.utils.set_random_seed(config.seed)
    if config.conditioning and train_samples.conditioning is None:
        raise ValueError("config.conditioning is set but the samples carry no extrapolation")
    use_cond = config.conditioning
    if not use_cond:
        train_samples = Samples(train_samples.frames, None, train_samples.events, train_samples.issue_times)
        if val_samples is not None:
            val_samples = Samples(val_samples.frames, None, val_samples.events, val_samples.issue_times)
    has_val = val_samples is not None and len(val_samples) > 0

    model = config.model_config().build()
    if initial_model is not None:
        model.set_weights(initial_model.get_weights())
    if config.monitor not in ("val_loss", "val_score"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_score', got {config.monitor!r}")
    history = {
        "config": asdict(config),
        "hardware": hardware,
        "parameters": int(model.count_params()),
        "n_train_samples": len(train_samples),
        "n_val_samples": len(val_samples) if has_val else 0,
        "train_events": sorted(set(train_samples.events)),
        "val_events": sorted(set(val_samples.events)) if has_val else [],
        "epochs": [],
        "best": {},
    }
    stages = [("one-step", config.epochs, 1, config.learning_rate)]
    if config.unroll_epochs:
        steps = min(config.unroll_steps, train_samples.n_leads)
        stages.append((f"unrolled-{steps}", config.unroll_epochs, steps, config.unroll_learning_rate))

    epoch_no = 0
    overall = {"monitored": float("inf"), "weights": None, "stage": None}
    with _progress(config.progress) as progress:
        for stage, n_epochs, n_steps, lr in stages:
            if n_epochs <= 0:
                continue
            optimizer = keras.optimizers.Adam(lr)
            if hardware["mixed_precision"]:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            teacher = n_steps == 1
            dataset = make_tf_dataset(
                train_samples,
                config.batch_size,
                shuffle=True,
                augment=config.augment,
                seed=config.seed + epoch_no,
                teacher_forced_lead=teacher,
            )

            @tf.function(reduce_retracing=True)
            def train_step(batch, n_steps=n_steps):
                with tf.GradientTape() as tape:
                    loss, _ = _unroll_loss(model, batch, n_steps, True, config.rain_mae_weight, config.fss_weight,
                                           config.logcosh_weight)
                    scaled = optimizer.scale_loss(loss)
                grads = tape.gradient(scaled, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            n_batches = math.ceil(len(train_samples) / config.batch_size)
            best_loss, best_weights, best_epoch, waited = float("inf"), None, None, 0
            for _ in range(n_epochs):
                epoch_no += 1
                started = time.perf_counter()
                task = progress.add_task(f"{stage} epoch {epoch_no}", total=n_batches, info="")
                losses = []
                for batch in dataset:
                    losses.append(float(train_step(batch)))
                    progress.update(task, advance=1, info=f"loss {np.mean(losses):.4f}")
                record = {"epoch": epoch_no, "stage": stage, "loss": float(np.mean(losses))}
                if has_val:
                    val_loss, val_skill = evaluate(model, val_samples, rain_mae_weight=config.rain_mae_weight,
                                                   fss_weight=config.fss_weight, logcosh_weight=config.logcosh_weight)
                    record.update(val_loss=val_loss, val_score=skill_score(val_skill), val_skill=val_skill)
                    progress.update(
                        task, info=f"loss {record['loss']:.4f} val {val_loss:.4f} CSI1/MAE {_fmt_skill(val_skill)}"
                    )
                record["seconds"] = round(time.perf_counter() - started, 1)
                history["epochs"].append(record)
                if config.progress:
                    line = f"epoch {epoch_no} ({stage}) loss {record['loss']:.4f}"
                    if has_val:
                        line += f" val {record['val_loss']:.4f} score {record['val_score']:.4f}"
                        line += f" CSI1/MAE {_fmt_skill(record['val_skill'])}"
                    progress.console.log(line + f" [{record['seconds']:.0f} s]")
                if not has_val:
                    continue
                monitored = record["val_loss"] if config.monitor == "val_loss" else -record["val_score"]
                if monitored < best_loss:
                    best_loss, best_weights, best_epoch, waited = monitored, model.get_weights(), epoch_no, 0
                else:
                    waited += 1
                    if waited >= config.patience:
                        break
            if best_weights is not None:
                model.set_weights(best_weights)
                history["best"][stage] = {
                    "epoch": best_epoch,
                    "monitor": config.monitor,
                    "value": best_loss if config.monitor == "val_loss" else -best_loss,
                }
                if best_loss < overall["monitored"]:
                    overall.update(monitored=best_loss, weights=best_weights, stage=stage)
    if overall["weights"] is not None:
        # A later stage (multi-step fine-tuning) is kept only if it improved the monitored value.
        model.set_weights(overall["weights"])
        history["kept_stage"] = overall["stage"]
    return model, history


def train_from_folders(
    folders,
    out_path: str | Path,
    *,
    base_filters: int = 16,
    epochs: int = 15,
    val_events=(),
    unroll_epochs: int = 0,
    unroll_steps: int = 6,
    conditioning: bool = True,
    smoothing_px_per_lead: float = 0.0,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    unroll_learning_rate: float = 3e-5,
    patience: int = 4,
    augment: bool = True,
    rain_mae_weight: float = 0.0,
    fss_weight: float = 0.0,
    logcosh_weight: float = 1.0,
    probability_matching: float = 0.0,
    matching_smoothing_px_per_lead: float = 0.0,
    head_activation: str = "relu",
    direct: bool = False,
    growth_input: bool = False,
    exceedance_weight: float = 1.0,
    intensity_log_range: float = 0.0,
    exceedance_thresholds_mm_h: tuple = THRESHOLDS_MM_H,
    decision_rule: str = "heads",
    core_probability: tuple = (),
    members: int = 1,
    monitor: str = "val_loss",
    max_samples_per_folder: int | None = None,
    init_model: str | Path | None = None,
    seed: int = 42,
    competition_files=(),
    threads: int | None = 2,
    progress: bool = True,
    with_baselines: bool = True,
) -> dict:
    """Train on folders of archived scans and write ``out_path`` and its report.

    Parameters
    ----------
    folders : folders of ``RDR_YYYYMMDDHHMM.npz`` files; every 10 consecutive scans (4 inputs
        + 6 leads) is a sample. The event of a folder is its name without ``-wK``.
    out_path : the ``.keras`` file to write (no optimizer state). The training report goes to
        ``<stem>.report.json`` beside it.
    base_filters : RainNet width (16 -> 1.96 M parameters, 64 -> 31.4 M).
    epochs : maximum one-step epochs (early stopping on the validation events).
    val_events : event names held out for validation (whole events, all their windows).
    unroll_epochs, unroll_steps : multi-step fine-tuning epochs and recursive steps in the loss.
    conditioning : condition on the optical-flow extrapolation (the shipped model's variant);
        False gives the paper's plain 4-scan RainNet.
    smoothing_px_per_lead : Gaussian smoothing of the conditioning, sigma = this * lead index
        pixels (recorded in the model's name, applied again by the forecaster).
    rain_mae_weight : weight of an MAE term in mm/h added to the logcosh loss (0: paper's loss).
    fss_weight : weight of the neighbourhood term (1 - FSS at 1 and 5 mm/h, :func:`fss_loss`).
    logcosh_weight : weight of the paper's logcosh term on ln(R + 0.01) (1; less lets the other terms lead).
    probability_matching : weight of the intensity matching the forecaster applies to the
        network's output, against the newest scan smoothed by ``matching_smoothing_px_per_lead``
        pixels per lead (saved in the model's configuration; validation scores the raw output).
    head_activation : of the network's head convolution (``RainNetConfig``).
    direct : the six leads at once with exceedance heads (:mod:`nowcast_core.rainnet.direct`): fixed
        ``epochs`` of Keras ``fit``, no unrolling, no early stopping (validation events are only scored).
    growth_input : (direct only) the network also reads the rain's growth along its motion
        (:func:`nowcast_core.extrapolation.growth_tendency`).
    exceedance_weight : weight of the exceedance heads' cross-entropy in the direct network's loss.
    intensity_log_range : (direct only) with ``augment``, every training sample's rain rates are multiplied
        by a random factor exp(U(-a, a)) (0: not).
    exceedance_thresholds_mm_h : (direct only) ascending thresholds of the exceedance heads (mm/h).
    decision_rule : (direct only) how its decisions put a pixel at or above a threshold
        (:data:`nowcast_core.rainnet.direct.DECISION_RULES`).
    core_probability : (direct only) per threshold, from which probability the unsmoothed extrapolation's
        cores are kept (``RainNetConfig.core_probability``; chosen by ``bench/loeo.py cores``, not here).
    members : (direct only) networks trained with seeds ``seed``, ``seed + 1``, ...; the model is their mean.
    max_samples_per_folder : keep at most this many samples of a folder, evenly spread over its
        span (long, strongly autocorrelated folders would otherwise dominate).
    monitor : early-stopping criterion, ``"val_loss"`` or ``"val_score"`` (see :func:`train`).
    init_model : optional ``.keras`` file to fine-tune instead of starting from scratch.
    competition_files : optional competition ``train_*.npy`` files, used as extra one-step
        training samples only when ``unroll_epochs`` is 0 (they have a single lead).
    threads : TensorFlow CPU threads (None: TensorFlow's default).
    with_baselines : also score persistence and pysteps on the validation samples in the report.

    Returns
    -------
    dict: the training history, also written in the report.
    """
    started = time.perf_counter()
    hardware = configure_hardware(threads)
    folders = [Path(f) for f in folders]
    samples = samples_from_folders(
        folders, n_leads=N_LEADS, conditioning=conditioning, smoothing_px_per_lead=smoothing_px_per_lead,
        max_samples_per_folder=max_samples_per_folder, growth=growth_input and direct,
    )
    unknown = set(val_events) - set(samples.events)
    if unknown:
        raise ValueError(f"validation events {sorted(unknown)} not among {sorted(set(samples.events))}")
    train_samples, val_samples = split_by_event(samples, val_events)
    if competition_files:
        if unroll_epochs:
            raise ValueError("competition samples have one lead; use them without unroll_epochs")
        from nowcast_core.rainnet.dataset import concat_samples

        extra = samples_from_competition(
            competition_files, conditioning=conditioning, smoothing_px_per_lead=smoothing_px_per_lead
        )
        one_lead = train_samples.subset(np.arange(len(train_samples)))
        one_lead.frames = one_lead.frames[..., : N_INPUTS + 1]
        if one_lead.conditioning is not None:
            one_lead.conditioning = one_lead.conditioning[..., :1]
        train_samples = concat_samples([one_lead, extra])
    config = TrainConfig(
        base_filters=base_filters,
        epochs=epochs,
        unroll_epochs=unroll_epochs,
        unroll_steps=unroll_steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        unroll_learning_rate=unroll_learning_rate,
        patience=patience,
        augment=augment,
        conditioning=conditioning,
        smoothing_px_per_lead=smoothing_px_per_lead,
        rain_mae_weight=rain_mae_weight,
        fss_weight=fss_weight,
        logcosh_weight=logcosh_weight,
        probability_matching=probability_matching,
        matching_smoothing_px_per_lead=matching_smoothing_px_per_lead,
        head_activation=head_activation,
        direct=direct,
        growth_input=growth_input,
        exceedance_weight=exceedance_weight,
        intensity_log_range=intensity_log_range,
        exceedance_thresholds_mm_h=tuple(exceedance_thresholds_mm_h),
        decision_rule=decision_rule,
        core_probability=tuple(core_probability),
        members=members,
        monitor=monitor,
        seed=seed,
        progress=progress,
    )
    initial = None
    if init_model is not None:
        from nowcast_core.rainnet.config import load_model

        initial, _ = load_model(init_model)
    model, history = train(train_samples, val_samples if len(val_samples) else None, config, initial)
    if init_model is not None:
        history["init_model"] = Path(init_model).name
    out_path = save_model(model, out_path, config.model_config(history.get("decision_probability", ())))
    history["hardware"] = hardware
    history["folders"] = [f.name for f in folders]
    history["events"] = sorted({event_name(f) for f in folders})
    history["training_seconds"] = round(time.perf_counter() - started, 1)
    if len(val_samples) and not direct:
        loss, skill = evaluate(model, val_samples, rain_mae_weight=rain_mae_weight, fss_weight=fss_weight,
                               logcosh_weight=logcosh_weight)
        history["final_validation"] = {"val_loss": loss, "val_score": skill_score(skill), "rainnet": skill}
        if with_baselines:
            history["final_validation"].update(baseline_skill(val_samples))
    history["model_file"] = out_path.name
    history["model_bytes"] = out_path.stat().st_size
    report_path_for(out_path).write_text(json.dumps(history, indent=1, default=float))
    return history
