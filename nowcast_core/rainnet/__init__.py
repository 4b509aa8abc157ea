"""RainNet (Ayzel et al. 2020): a U-Net radar nowcast, trained and run on the feed's frames.

Modules: :mod:`~nowcast_core.rainnet.model` (the network), :mod:`~nowcast_core.rainnet.preprocess`
(invertible scale, stacking and padding transforms), :mod:`~nowcast_core.rainnet.recursive`
(batched recursive 6-lead forecast), :mod:`~nowcast_core.rainnet.direct` (the six leads at once with
exceedance heads: training on any Keras backend, decisions), :mod:`~nowcast_core.extrapolation` (optical-flow
conditioning), :mod:`~nowcast_core.rainnet.dataset` (samples, tf.data),
:mod:`~nowcast_core.rainnet.train` (training, reports; scores from
:mod:`nowcast_core.verification.scores`). TensorFlow is imported only by the functions that need it.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
BUNDLED_MODEL_NAME = "rainnet.keras"


def import_keras():
    """Keras (and TensorFlow), imported once without TensorFlow's start-up banner on stderr.

    TensorFlow's C++ start-up lines (oneDNN, CPU features, absl) go straight to file
    descriptor 2; they are hidden unless ``TF_CPP_MIN_LOG_LEVEL`` is set to 0 (``--verbose``).
    """
    import os
    import sys

    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet = os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"
    saved = os.dup(2) if quiet else None
    try:
        if quiet:
            sys.stderr.flush()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        import keras
        import tensorflow  # noqa: F401  (initialises the runtime now, while its lines are hidden)

        tensorflow.config.list_physical_devices()
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    return keras


def model_version(checksum: str) -> str:
    """Version string of a model file: ``rainnet-`` and the first 12 hex digits of its sha256."""
    return f"rainnet-{checksum[:12]}"


def report_path_for(model_path: str | Path) -> Path:
    """Where the training report of a model lives: ``MODEL.report.json`` beside ``MODEL.keras``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".report.json")


def training_events(model_path: str | Path | None) -> list[str]:
    """Events a model was trained on, from its training report ([] when there is none)."""
    import json

    report = report_path_for(model_path) if model_path else None
    if report is None or not report.is_file():
        return []
    return list(json.loads(report.read_text()).get("train_events", []))


def bundled_model_path() -> Path | None:
    """Path of the trained model shipped with the package, or None if it is absent."""
    path = MODEL_DIR / BUNDLED_MODEL_NAME
    return path if path.is_file() else None


__all__ = ["import_keras", "report_path_for", "training_events", "bundled_model_path", "model_version", "MODEL_DIR", "BUNDLED_MODEL_NAME"]
