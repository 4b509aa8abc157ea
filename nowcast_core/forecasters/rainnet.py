"""RainNet forecaster: a trained RainNet U-Net run recursively for six 10-minute leads.

The model is a ``.keras`` file loaded with ``safe_mode=True``; by default the one bundled
in ``nowcast_core/data/models/``. A model with a second (conditioning) input gets the
optical-flow extrapolation of the inputs (see ``nowcast_core.rainnet.extrapolation``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nowcast_core.forecasters import register
from nowcast_core.forecasters.base import N_LEADS, check_inputs


class RainNetForecaster:
    """Forecaster interface around a RainNet model file.

    Parameters
    ----------
    model_path : the ``.keras`` file.
    batch_size : issue times per network call.
    """

    name = "rainnet"

    def __init__(self, model_path: str | Path, batch_size: int = 16):
        import keras

        from nowcast_core.registry import file_sha256, model_version

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"RainNet model file not found: {self.model_path}")
        self.version = model_version(file_sha256(self.model_path))
        self.model = keras.saving.load_model(self.model_path, compile=False, safe_mode=True)
        self.batch_size = batch_size

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        """(n, 4, 120, 120) mm/h, oldest first, NaN = no data -> (n, 6, 120, 120) mm/h >= 0."""
        from nowcast_core.rainnet.recursive import recursive_forecast

        x = check_inputs(rain_rate_mm_h)
        if x.shape[2:] != (120, 120):
            raise ValueError(f"RainNet forecasts the 120 x 120 grid, got {x.shape[2:]}")
        out = recursive_forecast(self.model, x, N_LEADS, self.batch_size)
        return np.nan_to_num(out, nan=0.0, posinf=0.0).clip(0.0).astype(np.float32)


@register("rainnet")
def make_rainnet(model_path: str | Path | None = None) -> RainNetForecaster:
    """RainNet forecaster of ``model_path``; None means the bundled model."""
    if model_path is None:
        from nowcast_core.rainnet import bundled_model_path

        model_path = bundled_model_path()
        if model_path is None:
            raise FileNotFoundError("no bundled RainNet model in nowcast_core/data/models/; pass model_path")
    return RainNetForecaster(model_path)
