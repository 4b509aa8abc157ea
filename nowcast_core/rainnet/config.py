"""A RainNet's build configuration, saved as data inside its ``.keras`` file.

The forecaster, retraining and the registry read it from the file (never from the model's
name or its layers): width, upsampling, whether the extrapolation conditions the network and
how much that extrapolation is smoothed per lead.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nowcast_core.rainnet.direct import THRESHOLDS_MM_H

#: The member of the ``.keras`` zip that holds :class:`RainNetConfig` as JSON (Keras ignores it).
CONFIG_MEMBER = "nowcast_rainnet.json"
#: The :class:`TrainConfig` fields a model keeps in ``RainNetConfig.fine_tuning``: its loss and its
#: augmentation, with which retraining fine-tunes it.
FINE_TUNING_FIELDS = ("logcosh_weight", "rain_mae_weight", "fss_weight", "exceedance_weight", "intensity_log_range")


@dataclass(frozen=True)
class RainNetConfig:
    """How a RainNet was built and what input it expects, saved with the model.

    ``conditioning``: a second input, the optical-flow extrapolation of the scans smoothed
    by ``smoothing_px_per_lead`` pixels per lead, to which the output is added (residual).
    ``probability_matching``: weight of the intensity matching applied to the network's
    forecast (:func:`nowcast_core.postprocessing.match_intensity`; 0: none), with the newest
    scan smoothed by ``matching_smoothing_px_per_lead`` pixels per lead as its reference.
    ``head_activation``: of the head convolution (see :func:`nowcast_core.rainnet.model.build_rainnet`).
    ``direct``: the six leads at once, with exceedance heads
    (:func:`nowcast_core.rainnet.model.build_direct_rainnet`, :mod:`nowcast_core.rainnet.direct`):
    ``exceedance_thresholds_mm_h`` are its heads' thresholds and ``decision_probability[i][k]`` the
    probability from which the forecast at lead k+1 is put at or above threshold i (chosen in training).
    ``growth_input`` (direct only): the network also reads the rain's growth along its motion
    (:func:`nowcast_core.extrapolation.growth_tendency`), after the extrapolation in its conditioning.
    ``fine_tuning``: the loss weights and augmentation it was trained with (:data:`FINE_TUNING_FIELDS`);
    empty for a model saved before they were kept.
    ``decision_rule`` (direct only): how its decisions put a pixel at or above a threshold
    (:data:`nowcast_core.rainnet.direct.DECISION_RULES`); ``heads`` for a model saved before it was kept.
    ``core_probability`` (direct only): per threshold, the exceedance probability from which a pixel
    where the extrapolation before smoothing reaches the threshold is put at or above it too (None: not
    at that threshold); empty: the decisions alone (:func:`nowcast_core.rainnet.direct.categorical_rates`).
    Chosen on events held out of training (``bench/loeo.py cores``), so it comes with the recipe, not from
    the training samples.
    ``members`` (direct only): how many networks of this configuration, trained with consecutive seeds,
    make the model; its output is their mean (:func:`nowcast_core.rainnet.model.average_members`).
    """

    base_filters: int = 16
    upsampling: str = "nearest"
    conditioning: bool = True
    smoothing_px_per_lead: float = 0.0
    probability_matching: float = 0.0
    matching_smoothing_px_per_lead: float = 0.0
    head_activation: str = "relu"
    direct: bool = False
    growth_input: bool = False
    exceedance_thresholds_mm_h: tuple = ()
    decision_probability: tuple = ()
    fine_tuning: dict = field(default_factory=dict)
    decision_rule: str = "heads"
    core_probability: tuple = ()
    members: int = 1

    def build(self):
        """A fresh, untrained network of this configuration."""
        from nowcast_core.contract import N_LEADS
        from nowcast_core.rainnet.model import average_members, build_direct_rainnet, build_rainnet

        if self.direct:
            return average_members([build_direct_rainnet(self.base_filters, N_LEADS,
                                                         tuple(self.exceedance_thresholds_mm_h),
                                                         upsampling=self.upsampling, growth_input=self.growth_input)
                                    for _ in range(self.members)])
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
    data = {k: v for k, v in data.items() if k in known}
    for key in ("exceedance_thresholds_mm_h", "decision_probability", "core_probability"):  # JSON lists -> tuples
        if key in data:
            data[key] = tuple(tuple(v) if isinstance(v, list) else v for v in data[key])
    return RainNetConfig(**data)


def load_model(path: str | Path):
    """``(keras.Model, RainNetConfig)`` of a ``.keras`` file, loaded in Keras' safe mode."""
    from nowcast_core.rainnet import import_keras

    keras = import_keras()

    config = read_config(path)
    return keras.saving.load_model(path, compile=False, safe_mode=True), config


@dataclass
class TrainConfig:
    """Settings of :func:`nowcast_core.rainnet.train.train`; every field is stored in the training report."""

    base_filters: int = 16
    epochs: int = 15
    unroll_epochs: int = 0
    unroll_steps: int = 6
    batch_size: int = 8
    learning_rate: float = 1e-4
    unroll_learning_rate: float = 3e-5
    patience: int = 4
    augment: bool = True
    conditioning: bool = True
    smoothing_px_per_lead: float = 0.0
    upsampling: str = "nearest"
    rain_mae_weight: float = 0.0
    fss_weight: float = 0.0
    logcosh_weight: float = 1.0
    probability_matching: float = 0.0
    matching_smoothing_px_per_lead: float = 0.0
    head_activation: str = "relu"
    direct: bool = False
    growth_input: bool = False
    exceedance_weight: float = 1.0
    intensity_log_range: float = 0.0
    exceedance_thresholds_mm_h: tuple = THRESHOLDS_MM_H
    decision_rule: str = "heads"
    core_probability: tuple = ()
    members: int = 1
    monitor: str = "val_loss"
    seed: int = 42
    progress: bool = True

    def model_config(self, decision_probability=()) -> RainNetConfig:
        """The network's build configuration, saved inside the model file; a direct network's
        ``decision_probability`` (``[threshold][lead]``) is chosen by its training."""
        return RainNetConfig(base_filters=self.base_filters, upsampling=self.upsampling,
                             conditioning=self.conditioning,
                             smoothing_px_per_lead=self.smoothing_px_per_lead if self.conditioning else 0.0,
                             probability_matching=self.probability_matching,
                             matching_smoothing_px_per_lead=self.matching_smoothing_px_per_lead,
                             head_activation=self.head_activation, direct=self.direct,
                             growth_input=self.growth_input and self.direct,
                             exceedance_thresholds_mm_h=tuple(self.exceedance_thresholds_mm_h) if self.direct else (),
                             decision_probability=tuple(tuple(row) for row in decision_probability),
                             fine_tuning={name: getattr(self, name) for name in FINE_TUNING_FIELDS},
                             decision_rule=self.decision_rule if self.direct else "heads",
                             core_probability=tuple(self.core_probability) if self.direct else (),
                             members=self.members if self.direct else 1)

