"""Operators' figures: the forecast panels of ``nowcast predict --plot``."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from nowcast_core.dams import load_dams
from nowcast_core.plots import label_positions, plot_forecast


def _boxes(dams, positions, char_px, height_px):
    out = []
    for dam, (x, y, ha) in zip(dams, positions, strict=True):
        width = char_px * len(dam.id)
        x0 = x if ha == "left" else x - width
        out.append((x0, y - height_px / 2, x0 + width, y + height_px / 2))
    return out


@pytest.mark.parametrize("char_px, height_px", [(1.9, 4.5), (2.3, 5.5)])  # the web map's and predict's sizes
def test_the_seven_dam_names_do_not_overlap_and_stay_on_the_grid(char_px, height_px):
    dams = load_dams()
    boxes = _boxes(dams, label_positions(dams, (120, 120), char_px, height_px), char_px, height_px)
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= 120 and 0 <= a[1] and a[3] <= 120
        for b in boxes[i + 1:]:
            assert a[2] < b[0] or a[0] > b[2] or a[3] < b[1] or a[1] > b[3], (a, b)


def test_forecast_panels_fill_the_figure(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    inputs = rng.gamma(0.5, 2.0, (4, 120, 120)).astype(np.float32)
    forecast = rng.gamma(0.5, 2.0, (6, 120, 120)).astype(np.float32)
    out = plot_forecast(inputs, forecast, datetime(2020, 1, 1, tzinfo=UTC), load_dams(), tmp_path / "f.png", "rainnet")
    with Image.open(out) as image:
        assert image.size == (1360, 608)
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 12  # the rain classes, outlines and text: not blank


def test_reliability_panels_can_be_other_events_than_a_pixels_rate(tmp_path):
    from nowcast_core.plots import plot_reliability
    from nowcast_core.verification.probabilistic import ProbCounts

    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 500)
    observed = (rng.uniform(0, 1, 500) < p) * 10.0  # reliable by construction
    counts = {("production", "depth 5"): ProbCounts.of(p, observed, 5.0),
              ("production", "rate 1"): ProbCounts.of(p, observed, 1.0)}
    out = tmp_path / "dams.png"
    plot_reliability(counts, out, thresholds_mm_h=["rate 1", "depth 5"], min_pixels=10,
                     panel_titles=["catchment mean >= 1 mm/h", "depth over the hour >= 5 mm"])
    assert out.stat().st_size > 20_000


def test_dry_and_no_data_are_far_apart_on_every_map():
    from matplotlib.colors import to_rgb

    from nowcast_core.plots import DRY_COLOUR, NO_DATA_COLOUR, rain_classes

    cmap, norm = rain_classes()
    dry, no_data = cmap(norm(np.array([0.05])))[0][:3], cmap(np.ma.masked_invalid([np.nan]))[0][:3]
    assert np.allclose(dry, to_rgb(DRY_COLOUR)) and np.allclose(no_data, to_rgb(NO_DATA_COLOUR))
    lightness = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in (dry, no_data)]
    assert lightness[1] - lightness[0] > 0.3
