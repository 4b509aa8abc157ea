"""RainNet (Ayzel et al. 2020): a U-Net radar nowcast, trained and run on the feed's frames.

Modules: :mod:`~nowcast_core.rainnet.model` (the network), :mod:`~nowcast_core.rainnet.preprocess`
(invertible scale, stacking and padding transforms), :mod:`~nowcast_core.rainnet.recursive`
(batched recursive 6-lead forecast), :mod:`~nowcast_core.rainnet.extrapolation` (optical-flow
conditioning), :mod:`~nowcast_core.rainnet.dataset` (samples, tf.data),
:mod:`~nowcast_core.rainnet.train` (training, reports; scores from
:mod:`nowcast_core.verification`). TensorFlow is imported only by the functions that need it.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
BUNDLED_MODEL_NAME = "rainnet.keras"


def bundled_model_path() -> Path | None:
    """Path of the trained model shipped with the package, or None if it is absent."""
    path = MODEL_DIR / BUNDLED_MODEL_NAME
    return path if path.is_file() else None


__all__ = ["bundled_model_path", "MODEL_DIR", "BUNDLED_MODEL_NAME"]
