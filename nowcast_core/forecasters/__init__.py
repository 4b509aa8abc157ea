"""Forecasters behind one interface, found by name.

Every forecaster maps the rain rates of the last four scans to six 10-minute leads::

    forecaster = get_method("pysteps")
    rain_rate_mm_h = forecaster.forecast(inputs)   # (n, 4, 120, 120) -> (n, 6, 120, 120)

Inputs are float32 rain rates in mm/h, oldest scan first, NaN where the radar saw nothing.
Outputs are finite float32 rain rates >= 0. ``forecaster.name`` and ``forecaster.version``
are stored with every run.
"""

from __future__ import annotations

from collections.abc import Callable

from nowcast_core.forecasters.base import LEAD_MINUTES, N_INPUTS, N_LEADS, Forecaster

_REGISTRY: dict[str, Callable[..., Forecaster]] = {}


def register(name: str):
    """Decorator that registers a forecaster factory under ``name``."""

    def wrap(factory):
        _REGISTRY[name] = factory
        return factory

    return wrap


def get_method(name: str, **kwargs) -> Forecaster:
    """A forecaster by name: ``persistence``, ``pysteps``, ``extrapolation-filled``, ``sprog``,
    ``steps-mean`` or ``rainnet``.

    Keyword arguments go to the forecaster's factory (``rainnet`` takes ``model_path``,
    ``steps-mean`` ``n_members`` and ``seed``, ``sprog`` and ``steps-mean`` ``n_cascade_levels``).
    """
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown forecast method {name!r}; known: {sorted(_REGISTRY)}") from None
    return factory(**kwargs)


def method_names() -> list[str]:
    """Names of the registered methods."""
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    # Imported lazily: rainnet pulls in TensorFlow, which the baselines do not need.
    from nowcast_core.forecasters import (  # noqa: F401
        extrapolation_filled,
        optical_flow,
        persistence,
        rainnet,
        sprog,
        steps_mean,
    )


__all__ = ["Forecaster", "get_method", "method_names", "register", "N_INPUTS", "N_LEADS", "LEAD_MINUTES"]
