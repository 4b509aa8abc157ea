"""The stronger references of the forecaster registry: extrapolation-filled, sprog, steps-mean.

Synthetic moving rain: a textured Gaussian blob translated 3 pixels east and 1 south per scan.
"""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_core.forecasters import get_method, method_names

REFERENCES = ("extrapolation-filled", "sprog", "steps-mean")
STEP_PX = (1.0, 3.0)  # rows (south), columns (east) per 10 minutes


def _scan(row: float, col: float, peak_mm_h: float = 20.0) -> np.ndarray:
    r, c = np.mgrid[:120, :120].astype(np.float64)
    # Two blobs of different size, so Lucas-Kanade finds corners to track.
    main = np.exp(-((r - row) ** 2 / (2 * 7.0 ** 2) + (c - col) ** 2 / (2 * 10.0 ** 2)))
    cell = np.exp(-((r - row - 8) ** 2 + (c - col - 6) ** 2) / (2 * 3.0 ** 2))
    rate = peak_mm_h * (0.7 * main + 0.6 * cell)
    return np.where(rate >= 0.1, rate, 0.0).astype(np.float32)


def _moving_rain(n: int = 2) -> np.ndarray:
    """(n, 4, 120, 120): issue time i starts one step further along."""
    return np.stack([np.stack([_scan(40 + STEP_PX[0] * (i + k), 30 + STEP_PX[1] * (i + k)) for k in range(4)])
                     for i in range(n)])


def _centroid(field: np.ndarray) -> np.ndarray:
    r, c = np.mgrid[:field.shape[0], :field.shape[1]]
    w = field.astype(np.float64)
    return np.array([(w * r).sum() / w.sum(), (w * c).sum() / w.sum()])


def _make(name: str):
    return get_method(name, n_members=4, seed=7) if name == "steps-mean" else get_method(name)


def test_references_are_registered_with_versions():
    assert set(REFERENCES) <= set(method_names())
    for name in REFERENCES:
        f = _make(name)
        assert f.name == name
        assert f.version and "pysteps-" in f.version


@pytest.fixture(scope="module")
def forecasts():
    x = _moving_rain(2)
    return x, {name: _make(name).forecast(x) for name in REFERENCES}


@pytest.mark.parametrize("name", REFERENCES)
def test_shape_finite_non_negative(forecasts, name):
    _, out = forecasts
    f = out[name]
    assert f.shape == (2, 6, 120, 120) and f.dtype == np.float32
    assert np.isfinite(f).all() and (f >= 0).all()
    assert (f.max(axis=(2, 3)) > 1.0).all()  # rain kept at every lead


#: Pixels the rain's centre of mass may be off the motion's track at any lead: the deterministic
#: references follow it closely; the STEPS members' perturbed motion and noise move the mean's
#: centre by up to a few pixels.
TRACK_TOLERANCE_PX = {"extrapolation-filled": 1.0, "sprog": 1.0, "steps-mean": 3.0}


@pytest.mark.parametrize("name", REFERENCES)
def test_the_rain_moves_the_right_way(forecasts, name):
    x, out = forecasts
    for i in range(len(x)):
        start = _centroid(x[i, -1])
        for k in range(6):
            moved = _centroid(out[name][i, k]) - start
            expected = np.array(STEP_PX) * (k + 1)  # south and east, one step per lead
            assert np.abs(moved - expected).max() <= TRACK_TOLERANCE_PX[name], (name, i, k, moved, expected)


def test_extrapolation_filled_fills_the_inflow_edge_with_the_newest_scan():
    x = _moving_rain(1)
    x[0, :, :, :4] = 2.0  # rain at the west edge, where rain flows in with no upstream source
    filled = get_method("extrapolation-filled").forecast(x)
    dry = get_method("pysteps").forecast(x)
    assert np.allclose(filled[0, 5, 60, :2], 2.0, atol=0.2)  # newest scan there
    assert np.all(dry[0, 5, 60, :2] == 0.0)  # the plain reference has nothing there


@pytest.mark.parametrize("name", REFERENCES)
def test_no_data_and_dry_inputs(name):
    x = _moving_rain(2)
    x[0, :, :20, :] = np.nan  # radar saw nothing up north
    x[1] = 0.0  # a dry issue time
    f = _make(name).forecast(x)
    assert np.isfinite(f).all() and (f >= 0).all()
    assert (f[0].max(axis=(1, 2)) > 1.0).all()
    assert np.all(f[1] == 0.0)


def test_steps_mean_is_reproducible_per_seed():
    x = _moving_rain(2)
    a = get_method("steps-mean", n_members=4, seed=3).forecast(x)
    b = get_method("steps-mean", n_members=4, seed=3).forecast(x)
    c = get_method("steps-mean", n_members=4, seed=4).forecast(x)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.1  # the seed matters
    # one issue time alone gets the same forecast as inside a batch
    np.testing.assert_array_equal(get_method("steps-mean", n_members=4, seed=3).forecast(x[1:]), a[1:])


def test_sprog_is_deterministic_and_smooths_small_scales():
    x = _moving_rain(1)
    f = get_method("sprog")
    a, b = f.forecast(x), f.forecast(x)
    np.testing.assert_array_equal(a, b)
    # the small cell fades: the peak at +60 is below the newest scan's
    assert a[0, 5].max() < x[0, -1].max()


def test_empty_batch():
    x = np.zeros((0, 4, 120, 120), np.float32)
    for name in REFERENCES:
        assert _make(name).forecast(x).shape == (0, 6, 120, 120)


def test_nowcast_evaluate_runs_the_references(tmp_path):
    import json

    from typer.testing import CliRunner

    from nowcast_app.cli import app
    from nowcast_core.io.sample import write_sequence

    folder = tmp_path / "event"
    write_sequence(folder, n_scans=10, seed=3)  # one forecast start
    env = {"NOWCAST_HOME": str(tmp_path / "home")}
    methods = "sprog,steps-mean,extrapolation-filled,pysteps,persistence"
    result = CliRunner().invoke(app, ["evaluate", str(folder), "--methods", methods, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)  # pysteps' progress printing stays out of the JSON
    assert [r["method"] for r in rows[::6]] == methods.split(",")
    for r in rows:
        assert r["n_forecasts"] == 1
        assert {"fss_1_1km", "fss_5_15km", "area_5_forecast_px", "area_5_observed_px", "area_ratio_5"} <= set(r)
    table = CliRunner().invoke(app, ["evaluate", str(folder), "--methods", "sprog"], env=env)
    assert table.exit_code == 0, table.output
    for column in ("fss_1_5km", "fss_5_5km", "fss_5_15km", "area_ratio_5"):
        assert column in table.stdout


@pytest.mark.parametrize("name", ("sprog", "steps-mean"))
def test_a_few_scattered_rainy_pixels_give_the_plain_extrapolation_not_an_error(name):
    # Inputs as in bom-w0 at 2020-10-31 (a few pixels of shower, dry scans between): pysteps cannot
    # estimate the cascade's autocorrelation ("x contains non-finite values").
    x = np.zeros((1, 4, 120, 120), np.float32)
    x[0, 0, 10:11, 5:8] = 0.5
    x[0, 3, 100:102, 110:114] = 0.6
    out = _make(name).forecast(x)
    assert out.shape == (1, 6, 120, 120) and np.all(np.isfinite(out)) and np.all(out >= 0)
    if name == "sprog":  # S-PROG cannot estimate it here (STEPS's noise makes its fields non-constant)
        assert np.allclose(out, get_method("pysteps").forecast(x), atol=1e-5)
