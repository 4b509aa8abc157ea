"""Dams file, catchment masks and catchment rainfall."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nowcast_core.contract import LEAD_MINUTES
from nowcast_core.dams import (
    DEFAULT_DAMS_FILE,
    EMERGENCY_DEPTH_1H_MM,
    WATCH_DEPTH_1H_MM,
    Dam,
    catchment_mask,
    dam_rainfall,
    load_dams,
)

# The spec's dam pixels: flat index of the row-major 120 x 120 grid -> (row, col), in its order.
SPEC_DAM_PIXELS = {6071: (50, 71), 6304: (52, 64), 7026: (58, 66), 7629: (63, 69),
                   7767: (64, 87), 8944: (74, 64), 11107: (92, 67)}


def _dam(catchment: dict, id: str = "d", pixel=(60, 60)) -> Dam:
    return Dam.model_validate({"id": id, "pixel": pixel, "catchment": catchment})


def _write(tmp_path, text: str, suffix: str = ".toml"):
    path = tmp_path / f"dams{suffix}"
    path.write_text(text)
    return path


# --- the default dams file --------------------------------------------------------------------


def test_default_dams_file_has_the_seven_competition_pixels_in_order():
    dams = load_dams()
    assert load_dams(DEFAULT_DAMS_FILE) == dams
    assert [d.id for d in dams] == [f"dam-{k}" for k in range(1, 8)]
    assert [d.pixel for d in dams] == list(SPEC_DAM_PIXELS.values())
    assert [r * 120 + c for r, c in (d.pixel for d in dams)] == list(SPEC_DAM_PIXELS)
    for d in dams:
        assert d.catchment.centre == d.pixel
        assert catchment_mask(d)[d.pixel]
        assert d.name


def test_json_dams_file_with_a_polygon(tmp_path):
    records = [{"id": "p", "name": "Polygon dam", "pixel": [10, 12], "area_km2": 100.0,
                "catchment": {"vertices": [[4.5, 4.5], [4.5, 14.5], [14.5, 14.5], [14.5, 4.5]]}}]
    for doc in (records, {"dams": records}):
        (dam,) = load_dams(_write(tmp_path, json.dumps(doc), ".json"))
        assert dam.id == "p" and dam.area_km2 == 100.0 and dam.pixel == (10, 12)
        assert catchment_mask(dam).sum() == 100


# --- masks --------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [3.0, 5.0, 10.0, 20.0])
def test_disc_mask_area_is_about_pi_r_squared(radius):
    mask = catchment_mask(_dam({"centre": [60, 60], "radius_px": radius}))
    assert mask.dtype == bool and mask.shape == (120, 120)
    assert mask.sum() == pytest.approx(math.pi * radius**2, rel=0.1)
    assert mask[60, 60] and mask[60, 60 + int(radius)] and not mask[60, 60 + int(radius) + 1]


def test_disc_mask_is_clipped_at_the_grid_edge():
    mask = catchment_mask(_dam({"centre": [0, 0], "radius_px": 10}, pixel=(0, 0)))
    full = catchment_mask(_dam({"centre": [60, 60], "radius_px": 10}))
    assert 0.2 * full.sum() < mask.sum() < 0.3 * full.sum()


def test_polygon_mask_of_a_square_counts_pixel_centres_inside():
    square = [[19.5, 29.5], [19.5, 39.5], [29.5, 39.5], [29.5, 29.5]]  # rows 20..29, cols 30..39
    mask = catchment_mask(_dam({"vertices": square}))
    assert mask.sum() == 100
    assert mask[20:30, 30:40].all()
    # A triangle: half the square's area (its diagonal passes through no pixel centre).
    assert catchment_mask(_dam({"vertices": square[:3]})).sum() == pytest.approx(50, abs=10)


# --- dam_rainfall -------------------------------------------------------------------------


def test_all_dry_gives_zeros_and_no_alert():
    dams = load_dams()
    records = dam_rainfall(np.zeros((6, 120, 120), np.float32), dams)
    assert len(records) == len(dams) * len(LEAD_MINUTES)
    assert [(r["dam_id"], r["lead_minutes"]) for r in records] == [
        (d.id, lead) for d in dams for lead in LEAD_MINUTES]
    for r in records:
        assert r["mean_mm_h"] == r["max_mm_h"] == r["wet_fraction"] == r["depth_mm"] == r["dam_pixel_mm_h"] == 0
        assert r["alert"] is None


def test_all_wet_10_mm_h():
    records = dam_rainfall(np.full((6, 120, 120), 10.0, np.float32), load_dams())
    for r in records:
        assert r["mean_mm_h"] == pytest.approx(10.0)
        assert r["max_mm_h"] == pytest.approx(10.0)
        assert r["dam_pixel_mm_h"] == pytest.approx(10.0)
        assert r["wet_fraction"] == 1.0
        assert r["depth_mm"] == pytest.approx(10.0 * r["lead_minutes"] / 60)
        assert r["alert"] is None
        assert isinstance(r["mean_mm_h"], float)
    by_lead = {r["lead_minutes"]: r for r in records if r["dam_id"] == "dam-1"}
    assert by_lead[10]["depth_mm"] == pytest.approx(10 / 6)
    assert by_lead[60]["depth_mm"] == pytest.approx(10.0)


def test_statistics_follow_the_catchment_not_the_grid():
    dam = _dam({"centre": [60, 60], "radius_px": 5})
    mask = catchment_mask(dam)
    rates = np.zeros((6, 120, 120), np.float32)
    rates[:, ~mask] = 99.0  # outside the catchment: ignored
    rates[:, mask] = 0.05  # inside: below the wet threshold ...
    inside = np.argwhere(mask)
    rates[:, inside[0][0], inside[0][1]] = 30.0  # ... but one pixel
    rates[:, 60, 60] = 2.0
    first = dam_rainfall(rates, [dam])[0]
    n = mask.sum()
    assert first["max_mm_h"] == pytest.approx(30.0)
    assert first["dam_pixel_mm_h"] == pytest.approx(2.0)
    assert first["wet_fraction"] == pytest.approx(2 / n)
    assert first["mean_mm_h"] == pytest.approx((30.0 + 2.0 + 0.05 * (n - 2)) / n, rel=1e-5)


def test_depth_accumulates_each_lead_over_its_10_minutes():
    rates = np.stack([np.full((120, 120), r, np.float32) for r in (6, 12, 0, 0, 6, 60)])
    depths = [r["depth_mm"] for r in dam_rainfall(rates, load_dams()[:1])]
    assert depths == pytest.approx([1, 3, 3, 3, 4, 14])


def test_heavy_rain_triggers_watch_then_emergency():
    rates = np.full((6, 120, 120), 80.0, np.float32)  # 80 mm/h for an hour: 80 mm
    records = dam_rainfall(rates, load_dams())
    alerts = {r["lead_minutes"]: r["alert"] for r in records if r["dam_id"] == "dam-3"}
    # depth 13.3, 26.7, 40, 53.3, 66.7, 80 mm
    assert alerts == {10: None, 20: None, 30: None, 40: "watch", 50: "watch", 60: "emergency"}
    assert WATCH_DEPTH_1H_MM == 50 and EMERGENCY_DEPTH_1H_MM == 72


def test_emergency_on_one_catchment_only():
    dams = load_dams()
    rates = np.zeros((6, 120, 120), np.float32)
    rates[:, 85:100, 60:75] = 75.0  # a storm over dam-7's catchment only
    last = {r["dam_id"]: r for r in dam_rainfall(rates, dams) if r["lead_minutes"] == 60}
    assert last["dam-7"]["alert"] == "emergency"
    assert last["dam-7"]["depth_mm"] == pytest.approx(75.0)
    assert all(last[d.id]["alert"] is None for d in dams if d.id != "dam-7")


def test_nan_on_a_catchment_raises_but_elsewhere_is_ignored():
    dams = load_dams()
    rates = np.ones((6, 120, 120), np.float32)
    rates[:, 0, 0] = np.nan  # no dam uses this pixel
    assert dam_rainfall(rates, dams)[0]["mean_mm_h"] == pytest.approx(1.0)
    rates[3, 92, 68] = np.nan
    with pytest.raises(ValueError, match="dam-7"):
        dam_rainfall(rates, dams)
    rates[3, 92, 68] = -1.0
    with pytest.raises(ValueError, match="negative"):
        dam_rainfall(rates, dams)


def test_bad_shapes_and_leads_raise():
    dams = load_dams()
    with pytest.raises(ValueError, match="n_leads"):
        dam_rainfall(np.zeros((5, 120, 120), np.float32), dams)
    with pytest.raises(ValueError, match="lead minutes"):
        dam_rainfall(np.zeros((2, 120, 120), np.float32), dams, lead_minutes=(30, 20))
    with pytest.raises(ValueError, match="lead minutes"):
        dam_rainfall(np.zeros((2, 120, 120), np.float32), dams, lead_minutes=(60, 70))
    with pytest.raises(ValueError, match="outside"):
        dam_rainfall(np.zeros((6, 40, 40), np.float32), dams)


# --- bad dams files -------------------------------------------------------------------------

DAM = '[[dams]]\nid = "{id}"\npixel = {pixel}\ncatchment = {catchment}\n'
DISC = "{ centre = [60, 60], radius_px = 5 }"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DAM.format(id="a", pixel="[1, 1]", catchment=DISC) * 2, r"dam 'a'.*'id'.*duplicate"),
        (DAM.format(id="a", pixel="[120, 5]", catchment=DISC), r"dam 'a'.*'pixel'.*outside"),
        (DAM.format(id="a", pixel="[-1, 5]", catchment=DISC), r"dam 'a'.*'pixel'.*outside"),
        (DAM.format(id="a", pixel="[5, 5]", catchment="{ centre = [-30, 5], radius_px = 5 }"),
         r"dam 'a'.*'catchment'.*no pixel"),
        (DAM.format(id="a", pixel="[5, 5]", catchment="{ centre = [5, 5], radius_px = 0 }"),
         r"dam 'a'.*'catchment.radius_px'"),
        (DAM.format(id="a", pixel="[5, 5]", catchment="{ vertices = [[1, 1], [2, 2]] }"),
         r"dam 'a'.*'catchment.vertices'"),
        (DAM.format(id="a", pixel="[5, 5]", catchment="{ center = [5, 5], radius = 3 }"),
         r"dam 'a'.*'catchment'.*disc.*polygon"),
        (DAM.format(id="a", pixel="[5.5, 5]", catchment=DISC), r"dam 'a'.*'pixel.0'"),
        ('[[dams]]\nid = "a"\npixel = [5, 5]\n', r"dam 'a'.*'catchment'.*required"),
        ('[[dams]]\nid = "a"\npixle = [5, 5]\n' f"catchment = {DISC}\n", r"dam 'a'.*'pixle'"),
        ("[[dams]\n", r"not valid TOML"),
        ("title = 'no dams'\n", r"no 'dams' list"),
        ("dams = []\n", r"non-empty"),
    ],
)
def test_bad_dams_files_raise_a_clear_value_error(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as info:
        load_dams(path)
    assert str(path) in str(info.value)


def test_bad_json_and_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="not valid JSON"):
        load_dams(_write(tmp_path, "{", ".json"))
    with pytest.raises(ValueError, match="use .toml or .json"):
        load_dams(_write(tmp_path, "dams: []", ".yaml"))
    with pytest.raises(FileNotFoundError):
        load_dams(tmp_path / "missing.toml")
