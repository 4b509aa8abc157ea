"""Retraining: a challenger fine-tuned from the champion, promoted only when measurably better.

1. A dataset from the archived scans (optionally with extra folders such as the shipped
   training data), split by time: the most recent scans validate, the older ones train,
   with no window crossing the split.
2. The challenger starts from the champion's weights and is fine-tuned on the training part.
3. Champion, challenger and pysteps are scored on the same validation windows.
4. The challenger is promoted only if it beats the champion on ``settings.promotion_metric``
   by ``settings.promotion_margin``. Every candidate is registered with its metrics, data
   span, checksum and the decision with its reason.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select

from nowcast_core.config import Settings
from nowcast_core.contract import LEAD_MINUTES, N_INPUTS, N_LEADS, SCAN_INTERVAL
from nowcast_core.db import make_engine, session_factory
from nowcast_core.db.schema import FrameRecord
from nowcast_core.forecasters import Forecaster, get_method
from nowcast_core.forecasters.batch import forecast_batched
from nowcast_core.io import read_frame
from nowcast_core.io.files import file_sha256
from nowcast_core.io.sequences import frame_sequences
from nowcast_core.models import registry
from nowcast_core.rainnet import bundled_model_path, model_version
from nowcast_core.times import iso_utc
from nowcast_core.verification.scores import scores_per_lead

log = logging.getLogger(__name__)

#: Scores a challenger can be judged on: whether higher is better, and the rain rate (mm/h)
#: the validation scans must reach on enough pixels for the score to mean something.
METRICS = {"csi_1_mean": (True, 1.0), "csi_0.1_mean": (True, 0.1), "csi_5_mean": (True, 5.0),
           "mae_mm_h_mean": (False, 0.1)}
#: Per-lead scores kept in a retraining's metrics (keys of ``LeadCounts.summary``); ``<key>_mean``
#: is their mean over the leads.
SCORE_KEYS = ("csi_0.1", "csi_1", "csi_5", "mae_mm_h")


def score(forecaster: Forecaster, inputs: np.ndarray, observed: np.ndarray, batch: int = 16) -> dict:
    """Validation scores of one forecaster on (n, 4, H, W) inputs and (n, 6, H, W) observations:
    per lead CSI at 0.1/1/5 mm/h and MAE, and their means over leads (the promotion scores)."""
    forecast = forecast_batched(forecaster, inputs, batch)
    rows = scores_per_lead(forecast, observed, LEAD_MINUTES)
    out = {"per_lead": {str(r["lead_minutes"]): {k: _round(r[k]) for k in SCORE_KEYS} | {"n": r["n_forecasts"]}
                        for r in rows}}
    for key in SCORE_KEYS:
        values = [r[key] for r in rows if r[key] is not None]
        out[f"{key}_mean"] = round(float(np.mean(values)), 5) if values else float("nan")
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 5)


def wet_pixels(observed: np.ndarray) -> dict[str, int]:
    """Observed pixels at or above each metric's threshold, over all windows and leads."""
    return {f"{thr:g}": int(np.count_nonzero(observed >= thr)) for thr in sorted({t for _, t in METRICS.values()})}


def decide(challenger: dict, champion: dict, metric: str, margin: float, *,
           validation_wet_pixels: dict[str, int] | None = None, min_wet_pixels: int = 0) -> tuple[bool, str]:
    """Whether the challenger beats the champion by ``margin`` on ``metric``, and why.

    With ``validation_wet_pixels`` (see :func:`wet_pixels`), a validation period with fewer
    than ``min_wet_pixels`` observed pixels at the metric's threshold cannot promote: on
    (nearly) dry scans a CSI is noise.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown promotion metric {metric!r}; known: {sorted(METRICS)}")
    higher_better, threshold = METRICS[metric]
    new, old = challenger[metric], champion[metric]
    if validation_wet_pixels is not None:
        wet = validation_wet_pixels[f"{threshold:g}"]
        if wet < min_wet_pixels:
            return False, (f"too little rain to judge: {wet} observed pixels >= {threshold:g} mm/h in the "
                           f"validation scans, {min_wet_pixels} needed (challenger {metric} {new:.4f}, "
                           f"champion {old:.4f}): kept the champion")
    if not (np.isfinite(new) and np.isfinite(old)):
        return False, f"{metric} not finite (challenger {new}, champion {old}): kept the champion"
    gain = (new - old) if higher_better else (old - new)
    verdict = gain >= margin
    return verdict, (f"challenger {metric} {new:.4f} vs champion {old:.4f}: "
                     f"{'better' if gain > 0 else 'not better'} by {gain:+.4f} "
                     f"({'>=' if verdict else '<'} margin {margin:g}): "
                     f"{'promoted' if verdict else 'kept the champion'}")


def _archived_frames(settings: Settings):
    """Registered scans of the last ``settings.retrain_days`` before the newest, time order.

    An archive file that can no longer be read is skipped with a warning (it only makes a gap).
    """
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            newest = session.scalar(select(FrameRecord.scan_time).order_by(FrameRecord.scan_time.desc()).limit(1))
            if newest is None:
                return []
            since = newest - timedelta(days=settings.retrain_days)
            records = list(session.scalars(select(FrameRecord).where(FrameRecord.scan_time >= since)
                                           .order_by(FrameRecord.scan_time)))
    finally:
        engine.dispose()
    frames = []
    for r in records:
        try:
            frames.append(read_frame(r.archived_file(settings.archive)))
        except (OSError, ValueError) as exc:
            log.warning("retrain: archived scan %s skipped: %s", r.archive_path, exc)
    return frames


def split_by_time(frames: Sequence, validation_fraction: float, max_validation: timedelta):
    """Split scans at a time: validation windows start at it, training windows end before it."""
    times = [f.scan_time for f in frames]
    if len(times) < 2 * (N_INPUTS + N_LEADS):
        raise ValueError(f"only {len(times)} archived scans: too few to train and validate")
    span_start, newest = times[0], times[-1]
    cut = max(newest - max_validation, newest - (newest - span_start) * validation_fraction)
    split = min(t for t in times if t >= cut)  # on the scan grid
    first_input = split - SCAN_INTERVAL * (N_INPUTS - 1)
    train = [f for f in frames if f.scan_time < split]
    validation = [f for f in frames if f.scan_time >= first_input]
    return train, validation, split


def retrain(settings: Settings, *, epochs: int | None = None, extra_folders: Sequence[Path] | None = None,
            validation_fraction: float = 0.25, max_validation: timedelta = timedelta(days=2)) -> dict:
    """Train, judge and register a challenger; returns its registry entry (a dict).

    Parameters
    ----------
    settings : the system's settings (database, home, ``retrain_*`` and ``promotion_*``).
    epochs : fine-tuning epochs (default ``settings.retrain_epochs``).
    extra_folders : folders of scans added to the training part (e.g. the data the shipped
        model was trained on); they never validate. Default ``settings.retrain_extra_folders``.
    validation_fraction, max_validation : the most recent share of the archive's span, at
        most ``max_validation``, validates.
    """
    from nowcast_core.rainnet.config import FINE_TUNING_FIELDS, save_model
    from nowcast_core.rainnet.dataset import (
        concat_samples,
        samples_from_folder,
        samples_from_frames,
    )
    from nowcast_core.rainnet.recipes import get_recipe
    from nowcast_core.rainnet.train import TrainConfig, train

    frames = _archived_frames(settings)
    train_frames, val_frames, split = split_by_time(frames, validation_fraction, max_validation)
    _, inputs, observed = frame_sequences(val_frames, N_LEADS)
    if not len(inputs):
        raise ValueError("no validation window of 10 consecutive scans after the split")
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            registry.ensure_bundled_registered(session, bundled_model_path(), settings.home)
            champion = registry.champion(session)
            if champion is None:
                raise LookupError("no champion model to fine-tune: train one with `nowcast train` first")
            problem = registry.verify_model_file(champion, settings.home)
            if problem:
                raise LookupError(f"champion unusable: {problem}")
            champion_path, champion_version = champion.model_file(settings.home), champion.version

        champion_forecaster = get_method("rainnet", model_path=champion_path)
        arch = champion_forecaster.config  # the challenger keeps the champion's build configuration
        sample_kw = dict(conditioning=arch.conditioning, smoothing_px_per_lead=arch.smoothing_px_per_lead,
                         growth=arch.growth_input)
        parts = [samples_from_frames(train_frames, "archive", max_samples=settings.retrain_max_windows, **sample_kw)]
        extra = settings.retrain_extra_folders if extra_folders is None else extra_folders
        parts += [samples_from_folder(f, **sample_kw) for f in extra]
        train_samples = concat_samples(parts)  # raises ValueError when there is no window at all

        # The challenger keeps the champion's configuration (post-processing included) and is
        # fine-tuned with the champion's own loss and augmentation; a model saved without them gets
        # those of its kind's recipe.
        fine_tuning = dict(arch.fine_tuning) or {
            name: value for name, value in get_recipe("loeo-direct-exceedance" if arch.direct else "recursive").items()
            if name in FINE_TUNING_FIELDS}
        config = TrainConfig(epochs=epochs or settings.retrain_epochs, base_filters=arch.base_filters,
                             upsampling=arch.upsampling, conditioning=arch.conditioning,
                             head_activation=arch.head_activation, direct=arch.direct,
                             growth_input=arch.growth_input,
                             exceedance_thresholds_mm_h=tuple(arch.exceedance_thresholds_mm_h),
                             decision_rule=arch.decision_rule, core_probability=tuple(arch.core_probability),
                             members=arch.members,
                             smoothing_px_per_lead=arch.smoothing_px_per_lead,
                             probability_matching=arch.probability_matching,
                             matching_smoothing_px_per_lead=arch.matching_smoothing_px_per_lead,
                             **fine_tuning, learning_rate=settings.retrain_learning_rate, progress=False)
        # No validation samples here: the recent scans judge the challenger and must not also pick its epoch.
        model, history = train(train_samples, None, config, initial_model=champion_forecaster.model)
        models_dir = settings.home / "models"
        tmp = save_model(model, models_dir / "challenger.tmp.keras",
                         config.model_config(history.get("decision_probability", ())))
        final = models_dir / f"{model_version(file_sha256(tmp))}.keras"
        shutil.move(tmp, final)

        metrics = {
            "challenger": score(get_method("rainnet", model_path=final), inputs, observed),
            "champion": score(champion_forecaster, inputs, observed),
            "pysteps": score(get_method("pysteps"), inputs, observed),
            "champion_version": champion_version,
            "validation_windows": len(inputs),
            "validation_wet_pixels": wet_pixels(observed),
            "training_windows": len(train_samples),
            "validation_start": iso_utc(split),
            "epochs": sum(e.get("member", 0) == 0 for e in history["epochs"]),  # per member
            "members": config.members,
            "train_loss": [round(e["loss"], 5) for e in history["epochs"]],
        }
        promote, reason = decide(metrics["challenger"], metrics["champion"], settings.promotion_metric,
                                 settings.promotion_margin, validation_wet_pixels=metrics["validation_wet_pixels"],
                                 min_wet_pixels=settings.promotion_min_wet_pixels)
        with sessions() as session:
            record = registry.register_model(
                session, final, home=settings.home, role="candidate", decision="promoted" if promote else "rejected", reason=reason,
                metrics=metrics, base_filters=config.base_filters, n_params=int(model.count_params()),
                data_start=frames[0].scan_time, data_end=frames[-1].scan_time)
            if promote:
                registry.promote(session, record, reason)
            else:
                record.role = "rejected"
            session.commit()
            entry = registry.model_row(record, settings.home)
        log.info("retrain: %s", reason)
        return entry
    finally:
        engine.dispose()
