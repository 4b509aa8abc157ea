"""Retraining: a challenger fine-tuned from the champion, judged on the most recent scans,
promoted only when measurably better; the running service picks up a promotion at its next cycle."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import helpers_frames as hf
import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from flows.daemon import stop_daemon
from nowcast_app.cli import app
from nowcast_core.cycle.service import Service
from nowcast_core.db import make_engine, session_factory
from nowcast_core.db.schema import ForecastRun, ModelRecord
from nowcast_core.models import registry
from nowcast_core.models.retrain import retrain, score
from nowcast_core.rainnet import bundled_model_path

pytestmark = pytest.mark.slow
EVENT = "knmi-w0"  # 46 scans (7.5 h); the last quarter (about 2 h) validates


@pytest.fixture
def archived(make_sqlite_service, shared_radar):
    """A service whose archive holds a whole real event (ingested, not forecast)."""
    svc = make_sqlite_service(method=None, retrain_max_windows=24)
    files = sorted((shared_radar / EVENT).glob("RDR_*.npz"))
    hf.deliver(files, svc.settings.inbox)
    assert len(svc.ingest().registered) == len(files)
    with svc.sessions() as s:  # as the daemon's first cycle does
        assert registry.ensure_bundled_registered(s, bundled_model_path(), svc.settings.home) is not None
    return svc


def _models(svc: Service) -> list[dict]:
    with svc.sessions() as s:
        return [registry.model_row(r, svc.settings.home) for r in registry.list_models(s)]


def _champion_version(svc: Service) -> str:
    with svc.sessions() as s:
        return registry.champion(s).version


def test_retrain_on_a_real_event_registers_challenger_with_decision(archived):
    entry = retrain(archived.settings, epochs=1)
    models = _models(archived)
    assert [m["id"] for m in models] == [models[0]["id"], entry["id"]]
    bundled, challenger = models
    assert bundled["version"] == registry.model_version(registry.file_sha256(bundled_model_path()))
    # the decision, its reason, the metrics of all three on the same windows, span and checksum
    assert challenger["decision"] in ("promoted", "rejected")
    assert "csi_1_mean" in challenger["reason"] and "margin" in challenger["reason"]
    metrics = challenger["metrics"]
    for who in ("challenger", "champion", "pysteps"):
        assert sorted(metrics[who]["per_lead"], key=int) == ["10", "20", "30", "40", "50", "60"]
        assert {v["n"] for v in metrics[who]["per_lead"].values()} == {metrics["validation_windows"]}
        assert 0 < metrics[who]["csi_1_mean"] < 1 and metrics[who]["mae_mm_h_mean"] > 0
    assert metrics["champion_version"] == bundled["version"]
    assert metrics["training_windows"] == 24 and metrics["validation_windows"] > 0 and metrics["epochs"] == 1
    assert metrics["validation_wet_pixels"]["1"] >= 10000  # rain enough to judge on CSI at 1 mm/h
    won = metrics["challenger"]["csi_1_mean"] - metrics["champion"]["csi_1_mean"] >= 0.01
    assert (challenger["decision"] == "promoted") == won
    path = Path(challenger["path"])
    assert path.is_file() and registry.file_sha256(path) == challenger["checksum"]
    assert challenger["version"] == registry.model_version(challenger["checksum"])
    assert _champion_version(archived) == (challenger["version"] if won else bundled["version"])


def test_a_challenger_made_worse_on_purpose_is_not_promoted(archived, monkeypatch):
    import nowcast_core.rainnet.train as training

    real_train = training.train

    def train_then_spoil(*args, **kwargs):
        model, history = real_train(*args, **kwargs)
        # the 1 x 1 output heads (a recursive network's one; a direct network's rate and exceedance heads)
        heads = [layer for layer in model.layers if layer.weights and tuple(layer.weights[0].shape[:2]) == (1, 1)]
        assert heads
        for head in heads:
            kernel, bias = head.get_weights()[:2]
            head.set_weights([kernel, bias + 3.0])  # +3 on ln(R + 0.01) and on the logits: heavy rain everywhere
        return model, history

    monkeypatch.setattr(training, "train", train_then_spoil)
    before = _champion_version(archived)
    entry = retrain(archived.settings, epochs=1)
    assert entry["decision"] == "rejected" and entry["role"] == "rejected"
    assert "kept the champion" in entry["reason"]
    m = entry["metrics"]
    assert m["challenger"]["csi_1_mean"] < m["champion"]["csi_1_mean"] - 0.1
    assert _champion_version(archived) == before

    # `nowcast models list --format json`: oldest first, with id, created, decision, metrics
    env = {"NOWCAST_HOME": str(archived.settings.home), "NOWCAST_DATABASE_URL": archived.settings.database_url}
    result = CliRunner().invoke(app, ["models", "list", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [m["id"] for m in listed] == sorted(m["id"] for m in listed)
    assert listed[-1]["decision"] == "rejected" and listed[-1]["metrics"]["challenger"]
    assert {"id", "created", "decision", "metrics"} <= set(listed[0])


@pytest.mark.parametrize(("thresholds", "intensity_log_range", "decision_rule", "members"),
                         [((1.0, 5.0), 0.0, "heads", 1), ((1.0, 5.0, 10.0), math.log(2.0), "heads-or-rate", 2)])
def test_a_direct_champion_is_fine_tuned_as_a_direct_network(archived, shared_radar, tmp_path, thresholds,
                                                              intensity_log_range, decision_rule, members):
    from nowcast_core.forecasters import get_method
    from nowcast_core.rainnet.config import read_config
    from nowcast_core.rainnet.train import train_from_folders

    direct = tmp_path / "direct.keras"
    train_from_folders([shared_radar / "mch-20170131-w0"], direct, base_filters=4, direct=True, epochs=1,
                       smoothing_px_per_lead=2.0, max_samples_per_folder=4, batch_size=4, progress=False,
                       exceedance_thresholds_mm_h=thresholds, exceedance_weight=3.0,
                       intensity_log_range=intensity_log_range, decision_rule=decision_rule, members=members)
    assert read_config(direct).decision_rule == decision_rule
    trained_with = read_config(direct).fine_tuning
    assert trained_with["exceedance_weight"] == 3.0 and trained_with["intensity_log_range"] == intensity_log_range
    with archived.sessions() as s:
        record = registry.register_model(s, direct, home=archived.settings.home, decision="promoted", reason="a direct champion")
        registry.promote(s, record, "a direct champion")
        s.commit()
    entry = retrain(archived.settings, epochs=1)
    challenger = get_method("rainnet", model_path=entry["path"])
    assert challenger.config.direct and challenger.config.base_filters == 4
    assert challenger.config.exceedance_thresholds_mm_h == thresholds  # the champion's heads
    assert challenger.config.fine_tuning == trained_with  # fine-tuned with the champion's loss and augmentation
    assert challenger.config.decision_rule == decision_rule  # and decides as the champion does
    assert challenger.config.members == members  # each member fine-tuned from its own weights
    if members > 1:
        champion = get_method("rainnet", model_path=direct).model
        for k in range(members):
            before = champion.get_layer(f"member_{k}").get_weights()
            after = challenger.model.get_layer(f"member_{k}").get_weights()
            assert all(a.shape == b.shape for a, b in zip(before, after))
            assert not all(np.array_equal(a, b) for a, b in zip(before, after))
    assert np.array(challenger.config.decision_probability).shape == (len(thresholds), 6)  # chosen again
    assert entry["metrics"]["champion_version"] == record.version
    assert entry["decision"] in ("promoted", "rejected") and entry["metrics"]["epochs"] == 1


def test_running_service_picks_up_a_promoted_model_at_its_next_cycle(make_sqlite_service, tmp_path, shared_radar):
    """The daemon's long-lived service switches models without a restart."""
    from nowcast_core.rainnet.config import RainNetConfig, save_model

    svc = make_sqlite_service(method=None)
    settings = svc.settings
    files = sorted((shared_radar / EVENT).glob("RDR_*.npz"))[:8]
    hf.deliver(files[:5], settings.inbox)
    svc.ingest()
    first = svc.forecast(production=True)
    assert first.method == "rainnet" and first.runs == 2
    # An operator promotes another model (here an untrained width-4 network) from elsewhere.
    config = RainNetConfig(base_filters=4, conditioning=True, smoothing_px_per_lead=2.0)
    other = save_model(config.build(), tmp_path / "other.keras", config)
    with svc.sessions() as s:
        record = registry.register_model(s, other, home=settings.home, reason="test")
        registry.promote(s, record, "operator's choice")
        s.commit()
        new_version = record.version
    hf.deliver(files[5:], settings.inbox)
    svc.ingest()
    second = svc.forecast(production=True)
    assert second.runs == 3 and second.model_version == new_version != first.model_version
    with svc.sessions() as s:
        versions = [r.model_version for r in s.query(ForecastRun).order_by(ForecastRun.issue_time)]
    assert versions == [first.model_version] * 2 + [new_version] * 3
    # a rollback restores the previous champion, again at the next cycle
    with svc.sessions() as s:
        restored = registry.rollback(s)
        s.commit()
        assert restored.version == first.model_version
    hf.deliver(sorted((shared_radar / EVENT).glob("RDR_*.npz"))[8:9], settings.inbox)
    svc.ingest()
    assert svc.forecast(production=True).model_version == first.model_version


def test_retrain_without_enough_scans_says_why(make_sqlite_service, shared_radar):
    svc = make_sqlite_service()
    settings = svc.settings
    hf.deliver(sorted((shared_radar / EVENT).glob("RDR_*.npz"))[:12], settings.inbox)
    svc.ingest()
    with pytest.raises(ValueError, match="too few to train and validate"):
        retrain(settings, epochs=1)
    assert _models(svc) == []


def test_scores_pool_counts_over_windows():
    """The promotion scores are pooled counts, so a perfect forecaster gets CSI 1 and MAE 0."""
    class Oracle:
        name, version = "oracle", "1"

        def __init__(self, truth):
            self.truth = truth

        def forecast(self, x):
            return self.truth[: len(x)]

    rng = np.random.default_rng(0)
    observed = rng.gamma(0.5, 2.0, size=(5, 6, 16, 16)).astype(np.float32)
    result = score(Oracle(observed), np.zeros((5, 4, 16, 16), np.float32), observed, batch=5)
    assert result["csi_1_mean"] == 1.0 and result["mae_mm_h_mean"] == 0.0
    assert result["per_lead"]["60"]["n"] == 5


def test_forecasts_keep_arriving_on_time_during_a_retrain(tmp_path, shared_radar):
    """`nowcast run` with a retraining due every minute: scans delivered while the retraining
    child process trains are forecast within a few poll intervals, and the retraining ends
    with a registry entry."""

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    env.update(NOWCAST_HOME=str(home), NOWCAST_SETTLE_SECONDS="0", NOWCAST_POLL_INTERVAL_S="2",
               NOWCAST_BASELINES="[]", NOWCAST_RETRAIN_CRON="* * * * *", NOWCAST_RETRAIN_EPOCHS="1",
               NOWCAST_RETRAIN_MAX_WINDOWS="24", NOWCAST_REFERENCE_ENSEMBLE="")  # scans every 2 s: no STEPS reference
    files = sorted((shared_radar / EVENT).glob("RDR_*.npz"))
    hf.deliver(files[:30], home / "inbox")
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log_file:
        daemon = subprocess.Popen([sys.executable, "-m", "nowcast_app.cli", "run"], env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    delivered: dict[datetime, float] = {}  # scan time -> wall time of delivery
    retrain_started = retrain_finished = None
    try:
        deadline = time.monotonic() + 150
        while "retraining started" not in log_path.read_text():
            assert daemon.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no retraining within 150 s"
            time.sleep(0.5)
        retrain_started = time.time()
        for f in files[30:]:
            if "retraining finished" in log_path.read_text():
                break
            (scan_time,) = hf.deliver([f], home / "inbox")
            delivered[scan_time] = time.time()
            time.sleep(3.0)
        deadline = time.monotonic() + 240
        while "retraining finished" not in log_path.read_text():
            assert time.monotonic() < deadline, "retraining did not finish within 4 minutes"
            time.sleep(1.0)
        retrain_finished = time.time()
        time.sleep(6.0)  # the last delivered scan's cycle
    finally:
        stop_daemon(daemon, 90)
    log = log_path.read_text()
    assert "retraining finished (exit code 0)" in log, log[-3000:]
    during = {t: w for t, w in delivered.items() if retrain_started <= w <= retrain_finished}
    assert len(during) >= 3, f"only {len(during)} scans arrived during the retraining"
    engine = make_engine(f"sqlite:///{home / 'nowcast.db'}")
    try:
        with session_factory(engine)() as s:
            finished = dict(s.execute(select(ForecastRun.issue_time, ForecastRun.finished_at)
                                      .where(ForecastRun.is_production)).all())
            n_models = s.scalar(select(func.count()).select_from(ModelRecord))
    finally:
        engine.dispose()
    missing = [t for t in during if t not in finished]
    assert not missing, f"no forecast for scans delivered during the retraining: {missing}"
    lags = sorted(finished[t].timestamp() - wall for t, wall in during.items())
    assert lags[-1] < 20.0, f"forecast lags (s) during the retraining: {lags}"
    assert n_models == 2  # the bundled champion and the challenger with its decision
