"""Training recipes as data: the keyword arguments of ``train_from_folders`` by name.

- ``shipped``: how the bundled model (``docs/MODEL_CARD.md``) was trained: the recipe
  ``loeo-direct-heads-or-rate`` (below), chosen by the leave-one-event-out test, on every window
  of the five events of ``../shared/data/radar``::

      nowcast train ../shared/data/radar/* --out rainnet.keras --recipe shipped

  Retraining fine-tunes a model with the loss, augmentation and decision rule saved in its file
  (``nowcast_core.models.retrain``).
- ``recursive``: how the model bundled before it (``rainnet-2097633d5087``, recursive, one lead at a
  time) was trained, on the windows ``-w0`` .. ``-w3``, with ``knmi`` and ``mch-20150515`` validating
  (they choose the epoch and the stage)::

      nowcast train ../shared/data/radar/*-w[0-3] --out rainnet.keras --recipe recursive
- ``loeo-fss-linear-head``: ``loeo-fss`` with a linear head convolution, the fix of the dead head
  that the test found (``docs/MODEL_CARD.md``).
- ``loeo-learned-smoothing``: ``loeo-fss-linear-head`` without the fixed smoothing of the
  conditioning: the network gets the unsmoothed, persistence-filled extrapolation and learns how
  much to blur, sharpen and intensify per lead itself.
- ``loeo-linear-fss2-12ep``: ``loeo-fss-linear-head`` trained four times longer (12 one-step
  epochs; the one-step loss was still falling after 3) with twice the neighbourhood term's weight
  (the linear head faded rain).
- ``loeo-neighbourhood-led``: ``loeo-linear-fss2-12ep`` with the pixel terms nearly gone (no rain
  MAE, logcosh at 0.1): keeping rain where it falls is most of what the loss rewards.
- ``loeo-neighbourhood-balanced``: ``loeo-neighbourhood-led`` with logcosh at 0.3, between it and
  the pixel-led recipes: the neighbourhood-led network over-forecast (area at 5 mm/h 1.1 to 1.4
  times the observed) and lost on MAE.
- ``loeo-direct-exceedance``: the six leads at once with exceedance heads
  (``nowcast_core/rainnet/direct.py``): the network corrects the smoothed extrapolation's rate and its
  probability of 1 and 5 mm/h per lead, and the forecast is the rate made to agree with the exceedance
  decisions. Loss logcosh 0.3 + MAE (mm/h) 1.0 + cross-entropy 2.0; 25 epochs of Keras ``fit``.
- ``loeo-direct-learned-smoothing``: ``loeo-direct-exceedance`` conditioned on the unsmoothed,
  persistence-filled extrapolation: the smoothing is the network's to learn (the fixed-smoothing
  network's probabilities ranked the rain no better than its smoothed input did).
- ``loeo-direct-growth``: ``loeo-direct-exceedance`` that also reads how fast the rain grew along its
  motion (``nowcast_core.extrapolation.growth_tendency``): information its input does not hold, and
  which, weighted per lead and chosen on other events, beat that input at +10 and +20 minutes
  (``bench/conditioning_ceiling.py``).
- ``loeo-direct-growth-intensity``: ``loeo-direct-growth`` with every training sample's rain rates
  multiplied by a random factor between 1/2 and 2: trained on four events, the growth network learned
  that heavy rain fades, and on the rainiest held-out event (bom) no decision probability let its
  5 mm/h forecast reach its input's CSI.
- ``loeo-direct-growth-intensity-10``: ``loeo-direct-growth-intensity`` with a third exceedance head, at
  10 mm/h (each head's cross-entropy weighted as before): its rain above 10 mm/h faded by +30.
- ``loeo-direct-heads-or-rate``: ``loeo-direct-growth-intensity-10`` (the same training, so the same
  weights) under the decision rule ``heads-or-rate`` (``nowcast_core.rainnet.direct.DECISION_RULES``):
  a pixel whose rate head reaches a threshold stays there even where its exceedance head says no. The
  rate head alone beat the input at 5 and 10 mm/h at +10 minutes, where the heads' decisions lost to it.
- ``loeo-direct-members-2``: ``loeo-direct-heads-or-rate`` trained twice, with seeds 42 and 43, the model
  the mean of the two networks (``RainNetConfig.members``), its decisions chosen on that mean: each
  network's heads are sure of themselves on the events they were trained on, and on other events two
  networks that learned differently disagree where neither should be sure. Tried, not shipped: held out,
  it fails 2 pooled checks where seed 42 alone fails 1 (``docs/MODEL_CARD.md``).
- ``loeo-fss``: the recipe of the leave-one-event-out test (``bench/loeo.py``): fixed epochs and
  no validation events (the held-out event chooses nothing), every window capped at 15 samples,
  the neighbourhood (1 - FSS) loss term added.
"""

from __future__ import annotations

import math

RECIPES: dict[str, dict] = {
    "recursive": {
        "base_filters": 16,
        "epochs": 3,
        "unroll_epochs": 15,
        "learning_rate": 1e-4,
        "unroll_learning_rate": 5e-5,
        "batch_size": 8,
        "smoothing_px_per_lead": 2.0,
        "rain_mae_weight": 0.5,
        "fss_weight": 0.0,
        "monitor": "val_score",
        "patience": 4,
        "val_events": ("knmi", "mch-20150515"),
        "seed": 42,
    },
    "loeo-fss": {
        "base_filters": 16,
        "epochs": 3,
        "unroll_epochs": 1,
        "learning_rate": 1e-4,
        "unroll_learning_rate": 5e-5,
        "batch_size": 8,
        "smoothing_px_per_lead": 2.0,
        "rain_mae_weight": 0.5,
        "fss_weight": 1.0,
        "probability_matching": 0.0,
        "matching_smoothing_px_per_lead": 0.0,
        "max_samples_per_folder": 15,
        "seed": 42,
    },
}
RECIPES["loeo-fss-linear-head"] = {**RECIPES["loeo-fss"], "head_activation": "linear"}
RECIPES["loeo-learned-smoothing"] = {**RECIPES["loeo-fss-linear-head"], "smoothing_px_per_lead": 0.0}
RECIPES["loeo-linear-fss2-12ep"] = {**RECIPES["loeo-fss-linear-head"], "epochs": 12, "fss_weight": 2.0}
RECIPES["loeo-neighbourhood-led"] = {**RECIPES["loeo-linear-fss2-12ep"], "rain_mae_weight": 0.0, "logcosh_weight": 0.1}
RECIPES["loeo-neighbourhood-balanced"] = {**RECIPES["loeo-neighbourhood-led"], "logcosh_weight": 0.3}

RECIPES["loeo-direct-exceedance"] = {
    "base_filters": 16,
    "direct": True,
    "epochs": 25,
    "learning_rate": 3e-4,
    "batch_size": 8,
    "smoothing_px_per_lead": 2.0,
    "logcosh_weight": 0.3,
    "rain_mae_weight": 1.0,
    "exceedance_weight": 2.0,
    "max_samples_per_folder": 15,
    "seed": 42,
}
RECIPES["loeo-direct-learned-smoothing"] = {**RECIPES["loeo-direct-exceedance"], "smoothing_px_per_lead": 0.0}
RECIPES["loeo-direct-growth"] = {**RECIPES["loeo-direct-exceedance"], "growth_input": True}
RECIPES["loeo-direct-growth-intensity"] = {**RECIPES["loeo-direct-growth"], "intensity_log_range": math.log(2.0)}
RECIPES["loeo-direct-growth-intensity-10"] = {**RECIPES["loeo-direct-growth-intensity"],
                                              "exceedance_thresholds_mm_h": (1.0, 5.0, 10.0),
                                              "exceedance_weight": 3.0}  # 1.0 per head, as with two heads at 2.0
RECIPES["loeo-direct-heads-or-rate"] = {**RECIPES["loeo-direct-growth-intensity-10"], "decision_rule": "heads-or-rate"}
RECIPES["loeo-direct-members-2"] = {**RECIPES["loeo-direct-heads-or-rate"], "members": 2}
RECIPES["shipped"] = RECIPES["loeo-direct-heads-or-rate"]


def get_recipe(name: str) -> dict:
    """A copy of the named recipe; ValueError naming the known ones for an unknown name."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])
