"""Ensemble forecasters behind one interface, found by name (pysteps style).

Every ensemble maps the rain rates of the last four scans to ``n_members`` forecasts of six
10-minute leads::

    ensemble = get_ensemble("rainnet-ensemble")
    members_mm_h = ensemble.members(inputs, n_members=24, seed=7)   # (n, 4, H, W) -> (n, 24, 6, H, W)

Inputs are float32 rain rates in mm/h, oldest scan first, NaN where the radar saw nothing.
Members are finite float32 rain rates >= 0. The same inputs, ``seed`` and issue times give
the same members, whatever batch they are in (each issue time has its own generator).

Methods: ``steps`` (pysteps STEPS, the reference) and ``rainnet-ensemble`` (the production
ensemble: calibrated perturbations of the production deterministic forecast, see
:mod:`nowcast_core.ensembles.perturbed`). This package uses :mod:`nowcast_core.forecasters`;
the forecasters never import it.
"""

from __future__ import annotations

from collections.abc import Callable

from nowcast_core.ensembles.base import Ensemble, issue_generator

_REGISTRY: dict[str, Callable[..., Ensemble]] = {}


def register(name: str):
    """Decorator that registers an ensemble factory under ``name``."""

    def wrap(factory):
        _REGISTRY[name] = factory
        return factory

    return wrap


def get_ensemble(name: str, **kwargs) -> Ensemble:
    """An ensemble method by name: ``steps`` or ``rainnet-ensemble``; keyword arguments go to its factory."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown ensemble method {name!r}; known: {sorted(_REGISTRY)}") from None
    return factory(**kwargs)


def ensemble_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from nowcast_core.ensembles import perturbed, steps  # noqa: F401


__all__ = ["Ensemble", "ensemble_names", "get_ensemble", "issue_generator", "register"]
