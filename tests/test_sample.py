"""The synthetic sample radar sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nowcast_core.forecasters import get_method
from nowcast_core.io import pixel_to_rain_rate, read_folder, read_frame
from nowcast_core.io.sample import generate_sequence, write_sequence

START = datetime(2021, 7, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sequence():
    return generate_sequence(n_scans=36, start=START, seed=0)


def test_frames_follow_the_contract(sequence):
    assert len(sequence) == 36
    for k, (scan_time, frame) in enumerate(sequence):
        assert scan_time == START + k * timedelta(minutes=10)
        assert frame.dtype == np.uint8 and frame.shape == (120, 120)


def test_deterministic_for_a_seed_and_prefix_stable(sequence):
    again = generate_sequence(n_scans=36, start=START, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(sequence, again))
    shorter = generate_sequence(n_scans=5, start=START, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(sequence, shorter))
    other = generate_sequence(n_scans=5, start=START, seed=1)
    assert not np.array_equal(other[4][1], sequence[4][1])


def test_rain_looks_like_rain(sequence):
    rates = pixel_to_rain_rate(np.stack([f for _, f in sequence]))
    wet = (rates >= 0.1).mean(axis=(1, 2))
    assert 0.10 <= wet.mean() <= 0.40
    assert wet.min() >= 0.03 and wet.max() <= 0.6
    assert 20.0 <= rates.max() <= 70.0  # convective cores
    assert (rates >= 5).mean() > 0.005
    assert (np.stack([f for _, f in sequence]) == 0).mean() > 0.2  # dry pixels are 0


def test_naive_start_is_utc_and_misaligned_start_raises():
    (t0, _), _ = generate_sequence(n_scans=2, start=datetime(2021, 7, 1, 6, 0))
    assert t0 == START
    with pytest.raises(ValueError, match="10-minute"):
        generate_sequence(n_scans=2, start=datetime(2021, 7, 1, 6, 5, tzinfo=UTC))


def test_written_files_are_readable_contract_files(tmp_path, sequence):
    paths = write_sequence(tmp_path / "inbox", n_scans=4, start=START, seed=0)
    assert [p.name for p in paths] == [f"RDR_20210701{h:02d}{m:02d}.npz" for h, m in
                                       ((6, 0), (6, 10), (6, 20), (6, 30))]
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == [p.name for p in paths]  # no temp files left
    for path, (scan_time, frame) in zip(paths, sequence):
        read = read_frame(path)
        assert read.scan_time == scan_time
        assert np.array_equal(read.frame, frame)
        assert not read.nodata.any()
        with np.load(path, allow_pickle=False) as npz:
            assert npz.files == ["frame"]
    assert len(read_folder(tmp_path / "inbox")) == 4


def test_optical_flow_beats_persistence_at_30_minutes(sequence):
    rates = pixel_to_rain_rate(np.stack([f for _, f in sequence]))
    starts = [0, 8, 16, 24]  # inputs rates[s : s + 4], +30 min is rates[s + 6]
    inputs = np.stack([rates[s : s + 4] for s in starts])
    observed = np.stack([rates[s + 6] for s in starts])
    flow = get_method("pysteps").forecast(inputs)[:, 2]
    persistence = get_method("persistence").forecast(inputs)[:, 2]
    mae_flow = np.abs(flow - observed).mean(axis=(1, 2))
    mae_persistence = np.abs(persistence - observed).mean(axis=(1, 2))
    assert (mae_flow < mae_persistence).all(), (mae_flow, mae_persistence)
    assert mae_flow.mean() < 0.85 * mae_persistence.mean(), (mae_flow, mae_persistence)
