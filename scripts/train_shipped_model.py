"""Train the shipped RainNet (nowcast_core/data/models/rainnet.keras) on /work/shared/data/radar.

Usage::

    python scripts/train_shipped_model.py [--out PATH] [--epochs N] [--unroll-epochs N] ...

Whole events are held out for validation (default: knmi and mch-20150515); the training
report with per-epoch losses and validation skill (next to persistence and pysteps on the
same starts) is written beside the model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nowcast_core.rainnet.train import report_path_for, train_from_folders

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "radar"
DEFAULT_OUT = REPO / "nowcast_core" / "data" / "models" / "rainnet.keras"


def validate_through_interface(model_path: Path, folders, val_events) -> dict:
    """Score the saved model through the Forecaster interface on the held-out starts.

    Inputs are the rain rates of the feed's pixels (t-30 .. t); the same starts are scored
    for pysteps, persistence and the model's conditioning input alone. Also times them.
    """
    from nowcast_core.contract import N_INPUTS
    from nowcast_core.extrapolation import extrapolate_batch
    from nowcast_core.forecasters import get_method
    from nowcast_core.rainnet.dataset import event_name, samples_from_folders
    from nowcast_core.rainnet.preprocess import log_to_rain_rate
    from nowcast_core.verification.scores import scores_per_lead

    val_folders = [f for f in folders if event_name(f) in set(val_events)]
    samples = samples_from_folders(val_folders, conditioning=False)
    inputs = log_to_rain_rate(np.moveaxis(samples.frames[..., :N_INPUTS], -1, 1))
    observed = log_to_rain_rate(np.moveaxis(samples.frames[..., N_INPUTS:], -1, 1))
    out = {"n_starts": len(samples), "events": sorted(set(samples.events)), "seconds_per_start": {}}
    for name, kwargs in (("rainnet", {"model_path": model_path}), ("pysteps", {}), ("persistence", {})):
        forecaster = get_method(name, **kwargs)
        started = time.perf_counter()
        forecast = forecaster.forecast(inputs)
        out["seconds_per_start"][name] = (time.perf_counter() - started) / len(samples)
        out[name] = scores_per_lead(forecast, observed)
        if name == "rainnet":
            out["rainnet_version"] = forecaster.version
            smoothing = forecaster.config.smoothing_px_per_lead
    # the network's conditioning input alone: what the U-Net adds is the difference to this
    out["conditioning"] = scores_per_lead(extrapolate_batch(inputs, 6, smoothing), observed)
    out["conditioning_smoothing_px_per_lead"] = smoothing
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--unroll-epochs", type=int, default=3)
    p.add_argument("--unroll-steps", type=int, default=6)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--unroll-learning-rate", type=float, default=3e-5)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--val-events", nargs="*", default=["knmi", "mch-20150515"])
    p.add_argument("--no-conditioning", action="store_true")
    p.add_argument("--rain-mae-weight", type=float, default=0.0)
    p.add_argument("--smoothing", type=float, default=0.0, help="conditioning smoothing, pixels per lead")
    p.add_argument("--monitor", default="val_loss", choices=["val_loss", "val_score"])
    p.add_argument("--init-model", type=Path, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--validate-only", action="store_true", help="only re-score an existing --out model")
    args = p.parse_args()
    folders = sorted(d for d in args.data.iterdir() if d.is_dir())
    if args.validate_only:
        report_path = report_path_for(args.out)
        report = json.loads(report_path.read_text())
        report["interface_validation"] = validate_through_interface(args.out, folders, args.val_events)
        report_path.write_text(json.dumps(report, indent=1, default=float))
        return
    history = train_from_folders(
        folders,
        args.out,
        base_filters=args.width,
        epochs=args.epochs,
        val_events=args.val_events,
        unroll_epochs=args.unroll_epochs,
        unroll_steps=args.unroll_steps,
        conditioning=not args.no_conditioning,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        unroll_learning_rate=args.unroll_learning_rate,
        patience=args.patience,
        smoothing_px_per_lead=args.smoothing,
        rain_mae_weight=args.rain_mae_weight,
        monitor=args.monitor,
        init_model=args.init_model,
        seed=args.seed,
        threads=args.threads,
    )
    report_path = report_path_for(args.out)
    report = json.loads(report_path.read_text())
    report["interface_validation"] = validate_through_interface(args.out, folders, args.val_events)
    report_path.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {args.out} ({history['model_bytes'] / 1e6:.2f} MB) in {history['training_seconds']:.0f} s")


if __name__ == "__main__":
    main()
