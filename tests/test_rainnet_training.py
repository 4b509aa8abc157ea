"""Training on a few real scans, the training report, and the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

RADAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "radar"


@pytest.fixture
def radar_dir() -> Path:
    """The real radar folders of ``../shared/data/radar`` (skipped if absent)."""
    if not RADAR.is_dir():
        pytest.skip(f"real radar data not found at {RADAR}")
    return RADAR


def test_event_names_and_split(radar_dir):
    from nowcast_core.rainnet.dataset import (
        event_name,
        samples_from_folders,
        split_by_event,
    )

    assert event_name(radar_dir / "knmi-w2") == "knmi"
    assert event_name("mch-20150515-w0") == "mch-20150515"
    s = samples_from_folders([radar_dir / "fmi-20160928-w0", radar_dir / "mch-20170131-w1"], conditioning=False)
    assert s.frames.shape == (22, 120, 120, 10)
    tr, va = split_by_event(s, ["fmi-20160928"])
    assert set(tr.events) == {"mch-20170131"} and set(va.events) == {"fmi-20160928"}


def test_competition_importer(tmp_path):
    from nowcast_core.rainnet.dataset import samples_from_competition

    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        p = tmp_path / f"train_{i:05d}.npy"
        np.save(p, rng.integers(0, 256, size=(120, 120, 5), dtype=np.uint8))
        paths.append(p)
    s = samples_from_competition(paths, conditioning=True)
    assert s.frames.shape == (2, 120, 120, 5) and s.conditioning.shape == (2, 120, 120, 1)
    bad = tmp_path / "train_bad.npy"
    np.save(bad, np.zeros((120, 120, 4), np.uint8))
    with pytest.raises(ValueError):
        samples_from_competition([bad])


def test_tiny_training_run_writes_model_and_report(radar_dir, tmp_path):
    from nowcast_core.forecasters import get_method
    from nowcast_core.rainnet.train import report_path_for, train_from_folders

    out = tmp_path / "tiny.keras"
    history = train_from_folders(
        [radar_dir / "mch-20170131-w0", radar_dir / "fmi-20160928-w0"],
        out,
        base_filters=4,
        epochs=2,
        unroll_epochs=1,
        unroll_steps=2,
        smoothing_px_per_lead=2.0,
        rain_mae_weight=0.5,
        fss_weight=1.0,
        probability_matching=0.5,
        matching_smoothing_px_per_lead=1.0,
        max_samples_per_folder=6,
        monitor="val_score",
        val_events=["fmi-20160928"],
        batch_size=4,
        progress=False,
        with_baselines=False,
    )
    assert out.is_file() and out.stat().st_size < 1_000_000
    report = json.loads(report_path_for(out).read_text())
    assert [e["stage"] for e in report["epochs"]] == ["one-step", "one-step", "unrolled-2"]
    assert all(np.isfinite(e["loss"]) for e in report["epochs"])
    assert [r["lead_minutes"] for r in report["epochs"][0]["val_skill"]] == [10, 20, 30, 40, 50, 60]
    assert report["final_validation"]["rainnet"][0]["mae_mm_h"] >= 0
    assert report["kept_stage"] in ("one-step", "unrolled-2")
    assert history["n_train_samples"] == 6 and history["n_val_samples"] == 6  # 11 starts each, capped at 6
    assert report["config"]["fss_weight"] == 1.0

    forecaster = get_method("rainnet", model_path=out)
    assert forecaster.config.smoothing_px_per_lead == 2.0 and forecaster.config.base_filters == 4
    assert forecaster.config.probability_matching == 0.5 and forecaster.config.matching_smoothing_px_per_lead == 1.0
    rain = np.random.default_rng(0).gamma(0.3, 3.0, size=(3, 4, 120, 120)).astype(np.float32)
    y = forecaster.forecast(rain)
    assert y.shape == (3, 6, 120, 120) and np.all(np.isfinite(y)) and np.all(y >= 0)


def test_shipped_model_loads_in_safe_mode_and_forecasts(radar_dir):
    from nowcast_core.forecasters import get_method
    from nowcast_core.io import read_folder
    from nowcast_core.io.scale import pixel_to_rain_rate
    from nowcast_core.rainnet import bundled_model_path

    path = bundled_model_path()
    if path is None:
        pytest.skip("no shipped model at nowcast_core/data/models/rainnet.keras")
    assert path.stat().st_size <= 12 * 1024 * 1024
    forecaster = get_method("rainnet")  # loads with safe_mode=True
    assert forecaster.name == "rainnet" and forecaster.version.startswith("rainnet-")
    frames = read_folder(radar_dir / "knmi-w0")[:8]
    rain = np.stack([pixel_to_rain_rate(f.frame) for f in frames])
    batch = np.stack([rain[i : i + 4] for i in range(3)])
    batch[0, 0, :5, :5] = np.nan
    y = forecaster.forecast(batch)
    assert y.shape == (3, 6, 120, 120) and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    assert y.max() > 0.1  # rain in, rain out
