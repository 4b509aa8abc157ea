"""Train the shipped RainNet (nowcast_core/data/models/rainnet.keras) on /work/shared/data/radar.

Usage::

    python scripts/train_shipped_model.py [--out PATH] [--epochs N] [--unroll-epochs N] ...

Whole events are held out for validation (default: knmi and mch-20150515); the training
report with per-epoch losses and validation skill (next to persistence and pysteps on the
same starts) is written beside the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nowcast_core.rainnet.train import train_from_folders

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "radar"
DEFAULT_OUT = REPO / "nowcast_core" / "data" / "models" / "rainnet.keras"


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
    p.add_argument("--monitor", default="val_loss", choices=["val_loss", "val_score"])
    p.add_argument("--init-model", type=Path, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    folders = sorted(d for d in args.data.iterdir() if d.is_dir())
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
        rain_mae_weight=args.rain_mae_weight,
        monitor=args.monitor,
        init_model=args.init_model,
        seed=args.seed,
        threads=args.threads,
    )
    print(f"wrote {args.out} ({history['model_bytes'] / 1e6:.2f} MB) in {history['training_seconds']:.0f} s")


if __name__ == "__main__":
    main()
