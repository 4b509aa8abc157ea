"""An installation moved or restored to another folder goes on: the database records the archive's
scans and the home's models relative to their configured folders (migration 0009)."""

from __future__ import annotations

import shutil

import helpers_frames as hf
from fastapi.testclient import TestClient
from sqlalchemy import select

from nowcast_app.web import create_app
from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service
from nowcast_core.db.schema import (
    DamAlert,
    EnsembleRun,
    ForecastRun,
    FrameRecord,
    ModelRecord,
)
from nowcast_core.io.files import file_sha256
from nowcast_core.models import registry
from nowcast_core.models.retrain import _archived_frames
from nowcast_core.rainnet import model_version
from nowcast_core.rainnet.config import RainNetConfig, save_model
from nowcast_core.times import iso_minutes

EVENT = "mch-20170131-w0"


def _service(home) -> Service:
    svc = Service(load_settings(home=home, method=None, settle_seconds=0, baselines=[], reference_ensemble="",
                                ensemble_members=4))
    svc.migrate()
    return svc


def test_a_moved_home_forecasts_verifies_alerts_serves_and_retrains_from_its_new_place(tmp_path, shared_radar):
    files = sorted((shared_radar / EVENT).glob("RDR_*.npz"))[:9]
    old_home, new_home = tmp_path / "old", tmp_path / "new"
    svc = _service(old_home)
    try:
        # the champion: a model retraining would have written into the home (named by its version)
        config = RainNetConfig(base_filters=4, conditioning=True, smoothing_px_per_lead=2.0)
        tmp = save_model(config.build(), old_home / "models" / "tmp.keras", config)
        model = tmp.rename(tmp.parent / f"{model_version(file_sha256(tmp))}.keras")
        with svc.sessions() as s:
            registry.promote(s, registry.register_model(s, model, home=svc.settings.home, reason="retrained"), "test")
            s.commit()
        hf.deliver(files[:6], svc.settings.inbox)
        svc.ingest()
        first = svc.forecast(production=True)
        assert first.method == "rainnet" and first.runs == 3
    finally:
        svc.close()

    shutil.move(old_home, new_home)  # restored from a backup into another folder: the old one is gone
    svc = _service(new_home)
    try:
        with svc.sessions() as s:
            stored = [r.archive_path for r in s.scalars(select(FrameRecord))]
            assert all(not p.startswith("/") for p in stored), stored
            assert s.scalar(select(ModelRecord.path).where(ModelRecord.role == "champion")) == f"models/{model.name}"
        hf.deliver(files[6:], svc.settings.inbox)
        assert len(svc.ingest().registered) == 3
        # the forecast, its ensemble and its alert levels read inputs archived before the move
        later = svc.forecast(production=True)
        assert (later.method, later.runs, later.note) == ("rainnet", 3, ""), "the champion must be found, no fallback"
        with svc.sessions() as s:
            runs = set(s.scalars(select(ForecastRun.id).where(ForecastRun.is_production)))
            assert len(runs) == 6
            assert set(s.scalars(select(EnsembleRun.run_id))) == runs
            assert set(s.scalars(select(DamAlert.run_id))) == runs
        assert svc.verify() > 0  # the observations, from the moved archive
        assert [f.scan_time for f in _archived_frames(svc.settings)] == [hf.scan_time_from_name(f.name)
                                                                        for f in files]
        with TestClient(create_app(svc.settings)) as client:
            scan = iso_minutes(hf.scan_time_from_name(files[0].name))
            r = client.get(f"/api/v1/fields/{scan}/0.png")
            assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    finally:
        svc.close()
