"""Training recipes as data: the keyword arguments of ``train_from_folders`` by name.

``shipped`` is how the bundled model was trained (``nowcast train DIR... --out F --recipe
shipped``), and what the leave-one-event-out test (``bench/loeo.py``) trains on each fold;
``docs/MODEL_CARD.md`` explains every value. No validation events: the epochs are fixed, so no
held-out event chooses them.
"""

from __future__ import annotations

RECIPES: dict[str, dict] = {
    "shipped": {
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


def get_recipe(name: str) -> dict:
    """A copy of the named recipe; ValueError naming the known ones for an unknown name."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])
