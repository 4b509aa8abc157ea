"""Forecast fields on disk: quantization, round trip, checksums, atomic writes."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from nowcast_core.cycle.steps import store_run
from nowcast_core.dams import load_dams
from nowcast_core.db import make_engine, session_factory, upgrade
from nowcast_core.db.schema import ForecastRun
from nowcast_core.io.fields import (
    RESOLUTION_MM_H,
    load_field,
    quantize,
    save_field,
    write_verified,
)

ISSUE = datetime(2021, 7, 1, 6, 30, tzinfo=UTC)


def _field(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.gamma(0.5, 4.0, size=(6, 120, 120)).astype(np.float32)
    f[:, :20] = 0.0
    return f


def test_quantize_rounds_to_resolution_and_clips():
    x = np.array([0.0, 0.004, 0.014, 1.234, 1.235001, -3.0, 655.35, 1e6, 22.89025], np.float32)
    q = quantize(x)
    assert q.dtype == np.float32
    np.testing.assert_allclose(q, [0.0, 0.0, 0.01, 1.23, 1.24, 0.0, 655.35, 655.35, 22.89], atol=1e-5)
    np.testing.assert_array_equal(quantize(q), q)  # idempotent


def test_field_round_trip_is_exact_at_the_stored_resolution(tmp_path):
    field = _field()
    rel, checksum = save_field(tmp_path, ISSUE, "pysteps", field)
    assert rel.startswith("2021/07/01/202107010630_pysteps") and rel.endswith(".npz")
    path = tmp_path / rel
    assert checksum == hashlib.sha256(path.read_bytes()).hexdigest()
    back = load_field(tmp_path, rel, checksum)
    assert back.dtype == np.float32 and back.shape == (6, 120, 120)
    np.testing.assert_array_equal(back, quantize(field))
    assert np.abs(back - field).max() < RESOLUTION_MM_H
    wet = field >= RESOLUTION_MM_H
    assert np.abs(back - field)[wet].max() <= RESOLUTION_MM_H / 2 + 1e-5
    np.testing.assert_array_equal(load_field(tmp_path, rel), back)  # no checksum: no check
    # the file is a plain .npz that needs no pickle
    with np.load(path, allow_pickle=False) as npz:
        assert npz["rain_rate_counts"].dtype == np.uint16
        assert float(npz["resolution_mm_h"]) == RESOLUTION_MM_H
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left behind"


def test_same_field_gives_the_same_bytes(tmp_path):
    """Deterministic files: a re-run of the same forecast does not invalidate a stored checksum."""
    field = _field(1)
    _, c1 = save_field(tmp_path / "a", ISSUE, "persistence", field)
    _, c2 = save_field(tmp_path / "b", ISSUE, "persistence", field.copy())
    assert c1 == c2


def test_damaged_or_missing_field_is_an_error(tmp_path):
    rel, checksum = save_field(tmp_path, ISSUE, "persistence", _field())
    path = tmp_path / rel
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_field(tmp_path, rel, checksum)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        load_field(tmp_path, rel, checksum)


def test_verified_write_replaces_whole_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "d" / "f.bin"
    write_verified(b"first", target)
    assert target.read_bytes() == b"first"

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_verified(b"second, never complete", target)
    assert target.read_bytes() == b"first", "a failed write leaves the old file whole"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_losing_a_store_race_does_not_damage_the_winners_field(tmp_path, sqlite_url):
    """store_run expects "already stored by another process" (IntegrityError). The loser must
    not overwrite the winner's field file: the winner's run must still load with its checksum."""
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        sessions = session_factory(engine)
        dams = load_dams()
        kw = dict(issue_time=ISSUE, method="rainnet", model_version="rainnet-x", is_production=True, note="",
                  started_at=ISSUE, forecast_seconds=0.1, forecasts_dir=tmp_path, dams=dams, input_quality="ok")
        with sessions() as s:
            winner = store_run(s, rain_rate_mm_h=_field(1), **kw)
            assert winner is not None and len(winner.results) == 42
        with sessions() as s:  # the other process, with a slightly different forecast
            assert store_run(s, rain_rate_mm_h=_field(2), **kw) is None
        with sessions() as s:
            [run] = s.scalars(select(ForecastRun)).all()
            field = load_field(tmp_path, run.field_path, run.field_checksum)
            np.testing.assert_array_equal(field, quantize(_field(1)))
    finally:
        engine.dispose()
