"""A RainNet's build configuration, saved as data inside its ``.keras`` file.

The forecaster, retraining and the registry read it from the file (never from the model's
name or its layers): width, upsampling, whether the extrapolation conditions the network and
how much that extrapolation is smoothed per lead.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

#: The member of the ``.keras`` zip that holds :class:`RainNetConfig` as JSON (Keras ignores it).
CONFIG_MEMBER = "nowcast_rainnet.json"


@dataclass(frozen=True)
class RainNetConfig:
    """How a RainNet was built and what input it expects, saved with the model.

    ``conditioning``: a second input, the optical-flow extrapolation of the scans smoothed
    by ``smoothing_px_per_lead`` pixels per lead, to which the output is added (residual).
    ``probability_matching``: weight of the intensity matching applied to the network's
    forecast (:func:`nowcast_core.postprocessing.match_intensity`; 0: none), with the newest
    scan smoothed by ``matching_smoothing_px_per_lead`` pixels per lead as its reference.
    ``head_activation``: of the head convolution (see :func:`nowcast_core.rainnet.model.build_rainnet`).
    """

    base_filters: int = 16
    upsampling: str = "nearest"
    conditioning: bool = True
    smoothing_px_per_lead: float = 0.0
    probability_matching: float = 0.0
    matching_smoothing_px_per_lead: float = 0.0
    head_activation: str = "relu"

    def build(self):
        """A fresh, untrained network of this configuration."""
        from nowcast_core.rainnet.model import build_rainnet

        return build_rainnet(self.base_filters, upsampling=self.upsampling,
                             conditioning_channels=1 if self.conditioning else 0, residual=self.conditioning,
                             name=f"rainnet{self.base_filters}", head_activation=self.head_activation)


def save_model(model, path: str | Path, config: RainNetConfig) -> Path:
    """Write ``model`` as a ``.keras`` file (no optimizer state) with ``config`` inside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.optimizer = None
    model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(CONFIG_MEMBER, json.dumps(asdict(config), indent=1))
    return path


def read_config(path: str | Path) -> RainNetConfig:
    """The :class:`RainNetConfig` saved in a ``.keras`` file.

    Raises ValueError for a file saved without one (or not a ``.keras`` zip).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read(CONFIG_MEMBER))
    except KeyError:
        raise ValueError(f"{path} holds no RainNet build configuration ({CONFIG_MEMBER}); "
                         "it was saved by an older version: retrain it or add the configuration") from None
    except (zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable .keras model file: {exc}") from None
    known = set(RainNetConfig.__dataclass_fields__)
    return RainNetConfig(**{k: v for k, v in data.items() if k in known})


def load_model(path: str | Path):
    """``(keras.Model, RainNetConfig)`` of a ``.keras`` file, loaded in Keras' safe mode."""
    from nowcast_core.rainnet import import_keras

    keras = import_keras()

    config = read_config(path)
    return keras.saving.load_model(path, compile=False, safe_mode=True), config
