"""RainNet forecaster: a trained RainNet U-Net run recursively for six 10-minute leads.

The model is a ``.keras`` file loaded with ``safe_mode=True``; by default the one bundled
in ``nowcast_core/data/models/``. Its build configuration (``RainNetConfig``, saved inside
the file) says whether it takes the optical-flow extrapolation of the inputs as a second
input, how much that extrapolation is smoothed (see ``nowcast_core.extrapolation``) and how
much the forecast's intensities are matched to the newest scan's (``nowcast_core.postprocessing``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nowcast_core.contract import GRID_SHAPE
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

    def __init__(self, model_path: str | Path, batch_size: int = 32):
        from nowcast_core.io.files import file_sha256
        from nowcast_core.rainnet import model_version
        from nowcast_core.rainnet.config import load_model

        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"RainNet model file not found: {self.model_path}")
        self.version = model_version(file_sha256(self.model_path))
        self.model, self.config = load_model(self.model_path)
        self.batch_size = batch_size

    def forecast(self, rain_rate_mm_h: np.ndarray) -> np.ndarray:
        """(n, 4, 120, 120) mm/h, oldest first, NaN = no data -> (n, 6, 120, 120) mm/h >= 0."""
        x = check_inputs(rain_rate_mm_h)
        if x.shape[2:] != GRID_SHAPE:
            raise ValueError(f"RainNet forecasts the {GRID_SHAPE[0]} x {GRID_SHAPE[1]} grid, got {x.shape[2:]}")
        out = network_forecast(self.model, self.config, x, self.batch_size)
        out = np.nan_to_num(out, nan=0.0, posinf=0.0).clip(0.0).astype(np.float32)
        if self.config.probability_matching:
            from nowcast_core.postprocessing import match_intensity

            out = match_intensity(out, x[:, -1], self.config.probability_matching,
                                  self.config.matching_smoothing_px_per_lead)
        return out


def network_forecast(model, config, rain_rate_mm_h: np.ndarray, batch_size: int = 32,
                     extrapolation_mm_h: np.ndarray | None = None) -> np.ndarray:
    """A RainNet's own forecast (n, 6, 120, 120) mm/h before probability matching: recursive, or the
    direct network's six leads at once (``config.direct``). ``extrapolation_mm_h``: its conditioning
    (n, 6, 120, 120), if already computed (the configuration's smoothing); a network with a growth input
    or core probabilities computes it again with the growth and the unsmoothed extrapolation, from the
    same motion field."""
    if config.direct:
        from nowcast_core.extrapolation import direct_inputs
        from nowcast_core.rainnet.direct import conditioning_channels, direct_forecast

        growth = sharp = None
        if extrapolation_mm_h is None or config.growth_input or config.core_probability:
            extrapolation_mm_h, growth, sharp = direct_inputs(rain_rate_mm_h, N_LEADS, config.smoothing_px_per_lead,
                                                              config.growth_input, bool(config.core_probability))
        return direct_forecast(model, config, rain_rate_mm_h, conditioning_channels(extrapolation_mm_h, growth),
                               batch_size, sharp)
    from nowcast_core.rainnet.recursive import recursive_forecast

    return recursive_forecast(model, rain_rate_mm_h, N_LEADS, batch_size, extrapolation_mm_h,
                              smoothing_px_per_lead=config.smoothing_px_per_lead)


@register("rainnet")
def make_rainnet(model_path: str | Path | None = None) -> RainNetForecaster:
    """RainNet forecaster of ``model_path``; None means the bundled model."""
    if model_path is None:
        from nowcast_core.rainnet import bundled_model_path

        model_path = bundled_model_path()
        if model_path is None:
            raise FileNotFoundError("no bundled RainNet model in nowcast_core/data/models/; pass model_path")
    return RainNetForecaster(model_path)
