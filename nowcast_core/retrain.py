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

from nowcast_core import registry
from nowcast_core.config import Settings
from nowcast_core.db import make_engine, session_factory
from nowcast_core.db.models import FrameRecord
from nowcast_core.forecasters import LEAD_MINUTES, N_INPUTS, N_LEADS, Forecaster, get_method
from nowcast_core.frames import read_folder, read_frame
from nowcast_core.production import bundled_model_path
from nowcast_core.verification import LeadCounts, skill_per_lead

log = logging.getLogger(__name__)

#: Scores a challenger can be judged on, and whether higher is better.
METRICS = {"csi_1_mean": True, "csi_0.1_mean": True, "csi_5_mean": True, "mae_mean": False}


def summarize(pooled: dict[int, LeadCounts]) -> dict:
    """Per-lead CSI at 0.1/1/5 mm/h and MAE, and their means over leads (the promotion scores)."""
    out = {"per_lead": {}}
    for lead, c in pooled.items():
        out["per_lead"][str(lead)] = {"csi_0.1": c.csi(0.1), "csi_1": c.csi(1.0), "csi_5": c.csi(5.0),
                                      "mae": c.mae_mm_h, "n": c.n_forecasts}
    for key in ("csi_0.1", "csi_1", "csi_5", "mae"):
        values = [v[key] for v in out["per_lead"].values() if np.isfinite(v[key])]
        out[f"{key}_mean"] = float(np.mean(values)) if values else float("nan")
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}


def score(forecaster: Forecaster, inputs: np.ndarray, observed: np.ndarray, batch: int = 16) -> dict:
    """Validation scores of one forecaster on (n, 4, H, W) inputs and (n, 6, H, W) observations."""
    forecast = np.concatenate([forecaster.forecast(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])
    return summarize(skill_per_lead(forecast, observed, LEAD_MINUTES))


def decide(challenger: dict, champion: dict, metric: str, margin: float) -> tuple[bool, str]:
    """Whether the challenger beats the champion by ``margin`` on ``metric``, and why."""
    if metric not in METRICS:
        raise ValueError(f"unknown promotion metric {metric!r}; known: {sorted(METRICS)}")
    higher_better = METRICS[metric]
    new, old = challenger[metric], champion[metric]
    if not (np.isfinite(new) and np.isfinite(old)):
        return False, f"{metric} not finite (challenger {new}, champion {old}): kept the champion"
    gain = (new - old) if higher_better else (old - new)
    verdict = gain >= margin
    return verdict, (f"challenger {metric} {new:.4f} vs champion {old:.4f}: "
                     f"{'better' if gain > 0 else 'not better'} by {gain:+.4f} "
                     f"({'>=' if verdict else '<'} margin {margin:g}): "
                     f"{'promoted' if verdict else 'kept the champion'}")


def _archived_frames(settings: Settings):
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            records = list(session.scalars(select(FrameRecord).order_by(FrameRecord.scan_time)))
    finally:
        engine.dispose()
    return [read_frame(r.archive_path) for r in records]


def split_by_time(frames: Sequence, validation_fraction: float, max_validation: timedelta):
    """Split scans at a time: validation windows start at it, training windows end before it."""
    times = [f.scan_time for f in frames]
    if len(times) < 2 * (N_INPUTS + N_LEADS):
        raise ValueError(f"only {len(times)} archived scans: too few to train and validate")
    span_start, newest = times[0], times[-1]
    cut = max(newest - max_validation, newest - (newest - span_start) * validation_fraction)
    split = min(t for t in times if t >= cut)  # on the scan grid
    first_input = split - timedelta(minutes=10 * (N_INPUTS - 1))
    train = [f for f in frames if f.scan_time < split]
    validation = [f for f in frames if f.scan_time >= first_input]
    return train, validation, split


def retrain(settings: Settings, *, epochs: int | None = None, extra_folders: Sequence[Path] = (),
            validation_fraction: float = 0.25, max_validation: timedelta = timedelta(days=2)) -> dict:
    """Train, judge and register a challenger; returns its registry entry (a dict)."""
    from nowcast_core.rainnet.dataset import concat_samples, samples_from_frames
    from nowcast_core.rainnet.train import TrainConfig, save_model, train

    frames = _archived_frames(settings)
    train_frames, val_frames, split = split_by_time(frames, validation_fraction, max_validation)
    engine = make_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            registry.ensure_bundled_registered(session, bundled_model_path())
            champion = registry.champion(session)
            if champion is None:
                raise LookupError("no champion model to fine-tune: train one with `nowcast train` first")
            problem = registry.verify_model_file(champion)
            if problem:
                raise LookupError(f"champion unusable: {problem}")
            champion_path, champion_version = Path(champion.path), champion.version

        champion_forecaster = get_method("rainnet", model_path=champion_path)
        conditioning = champion_forecaster.uses_conditioning
        train_samples = concat_samples([samples_from_frames(train_frames, "archive", conditioning=conditioning)]
                                       + [samples_from_frames(read_folder(f), Path(f).name, conditioning=conditioning)
                                          for f in extra_folders])
        if not len(train_samples):
            raise ValueError("no training windows of 10 consecutive scans before the validation split")
        from nowcast_core.evaluation import rain_rates

        rates = rain_rates(val_frames)
        times = [f.scan_time for f in val_frames]
        index = {t: k for k, t in enumerate(times)}
        starts = [k for k, t in enumerate(times)
                  if all(t + timedelta(minutes=10 * j) in index for j in range(N_INPUTS + N_LEADS))]
        if not starts:
            raise ValueError("no validation window of 10 consecutive scans after the split")
        inputs = np.stack([rates[s:s + N_INPUTS] for s in starts])
        observed = np.stack([rates[s + N_INPUTS:s + N_INPUTS + N_LEADS] for s in starts])

        config = TrainConfig(epochs=epochs or settings.retrain_epochs, conditioning=conditioning,
                             base_filters=champion_forecaster.base_filters, progress=False,
                             learning_rate=settings.retrain_learning_rate)
        model, history = train(train_samples, None, config, initial_model=champion_forecaster.model)
        models_dir = settings.home / "models"
        tmp = save_model(model, models_dir / "challenger.tmp.keras")
        version = registry.model_version(registry.file_sha256(tmp))
        final = models_dir / f"{version}.keras"
        shutil.move(tmp, final)

        metrics = {
            "challenger": score(get_method("rainnet", model_path=final), inputs, observed),
            "champion": score(champion_forecaster, inputs, observed),
            "pysteps": score(get_method("pysteps"), inputs, observed),
            "champion_version": champion_version,
            "validation_windows": len(starts),
            "training_windows": len(train_samples),
            "validation_start": split.isoformat(),
            "epochs": len(history["epochs"]),
            "train_loss": [round(e["loss"], 5) for e in history["epochs"]],
        }
        promote, reason = decide(metrics["challenger"], metrics["champion"], settings.promotion_metric,
                                 settings.promotion_margin)
        with sessions() as session:
            record = registry.register_model(
                session, final, role="candidate", decision="promoted" if promote else "rejected", reason=reason,
                metrics=metrics, base_filters=config.base_filters, n_params=int(model.count_params()),
                data_start=frames[0].scan_time, data_end=frames[-1].scan_time)
            if promote:
                registry.promote(session, record, reason)
            else:
                record.role = "rejected"
            session.commit()
            entry = registry.model_row(record)
        log.info("retrain: %s", reason)
        return entry
    finally:
        engine.dispose()
