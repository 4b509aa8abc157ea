"""The model registry: bundled first champion, promotion, rollback, decisions."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from nowcast_core.db import make_engine, session_factory, upgrade
from nowcast_core.models import registry
from nowcast_core.models.retrain import decide, split_by_time

#: An installation's home that holds none of the test's files (they are recorded absolute).
HOME = Path("/nonexistent-nowcast-home")


@pytest.fixture
def sessions(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def _model_file(tmp_path, name, content):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_bundled_model_becomes_first_champion_once(sessions, tmp_path):
    bundled = _model_file(tmp_path, "bundled.keras", b"bundled weights")
    with sessions() as s:
        first = registry.ensure_bundled_registered(s, bundled, HOME)
        assert first.role == "champion" and first.decision == "bundled"
        assert registry.ensure_bundled_registered(s, bundled, HOME) is None  # never twice
        assert registry.champion(s).id == first.id
        assert first.version == registry.model_version(registry.file_sha256(bundled))


def test_the_shipped_model_follows_a_moved_or_upgraded_package(sessions, tmp_path):
    old_place = _model_file(tmp_path / "old-venv", "rainnet.keras", b"shipped weights")
    with sessions() as s:
        first = registry.ensure_bundled_registered(s, old_place, HOME)
        old_place.unlink()  # the package reinstalled elsewhere: the registered path is gone
        new_place = _model_file(tmp_path / "new-venv", "rainnet.keras", b"shipped weights")
        moved = registry.ensure_bundled_registered(s, new_place, HOME)
        assert moved.id == first.id and moved.path == str(new_place.resolve())
        assert registry.verify_model_file(registry.champion(s), HOME) is None
        new_place.write_bytes(b"newer shipped weights")  # an upgrade replaces the file in place
        upgraded = registry.ensure_bundled_registered(s, new_place, HOME)
        assert upgraded.id != first.id and registry.champion(s).id == upgraded.id
        assert "version of the package now installed" in upgraded.reason
        assert registry.verify_model_file(upgraded, HOME) is None
        # another install of the package beside the old one (the old copy still there and intact)
        side = _model_file(tmp_path / "side-venv", "rainnet.keras", b"newer shipped weights")
        assert registry.ensure_bundled_registered(s, side, HOME).id == upgraded.id
        assert registry.champion(s).path == str(side.resolve()) and new_place.is_file()
        third = _model_file(tmp_path / "third-venv", "rainnet.keras", b"third shipped weights")
        replaced = registry.ensure_bundled_registered(s, third, HOME)
        assert replaced.id not in (first.id, upgraded.id) and registry.champion(s).id == replaced.id
        back = registry.ensure_bundled_registered(s, side, HOME)  # the side install runs again: its model
        assert back.id == upgraded.id and registry.champion(s).id == upgraded.id and back.path == str(side.resolve())
        # a champion that is not the shipped model is never replaced
        other = registry.register_model(s, home=HOME, path=_model_file(tmp_path, "mine.keras", b"trained here"), reason="test")
        registry.promote(s, other, "by hand")
        new_place.write_bytes(b"yet another shipped file")
        assert registry.ensure_bundled_registered(s, new_place, HOME) is None
        assert registry.champion(s).id == other.id


def test_promote_and_rollback(sessions, tmp_path):
    with sessions() as s:
        a = registry.register_model(s, home=HOME, path=_model_file(tmp_path, "a.keras", b"a"), decision="bundled")
        registry.promote(s, a, "first")
        b = registry.register_model(s, home=HOME, path=_model_file(tmp_path, "b.keras", b"b"))
        registry.promote(s, b, "better")
        s.commit()
        assert registry.champion(s).id == b.id
        assert s.get(type(a), a.id).role == "retired"
        restored = registry.rollback(s)
        s.commit()
        assert restored.id == a.id and registry.champion(s).id == a.id
        assert s.get(type(b), b.id).role == "rolled_back"
        with pytest.raises(LookupError, match="nothing to roll back"):
            registry.rollback(s)
        c = registry.register_model(s, home=HOME, path=_model_file(tmp_path, "c.keras", b"c"))
        registry.promote(s, c, "newer")
        assert registry.rollback(s).id == a.id  # never back to the rolled-back b


def test_register_is_idempotent_on_checksum(sessions, tmp_path):
    with sessions() as s:
        p = _model_file(tmp_path, "m.keras", b"weights")
        copy = _model_file(tmp_path, "copy.keras", b"weights")
        assert registry.register_model(s, home=HOME, path=p).id == registry.register_model(s, home=HOME, path=copy).id


def test_verify_model_file_detects_corruption_and_absence(sessions, tmp_path):
    with sessions() as s:
        p = _model_file(tmp_path, "m.keras", b"weights")
        record = registry.register_model(s, home=HOME, path=p)
        assert registry.verify_model_file(record, HOME) is None
        p.write_bytes(b"weightz")
        assert "corrupt" in registry.verify_model_file(record, HOME)
        p.unlink()
        assert "missing" in registry.verify_model_file(record, HOME)


def test_a_model_in_the_home_is_recorded_relative_and_moves_with_it(sessions, tmp_path):
    old_home, new_home = tmp_path / "old", tmp_path / "new"
    retrained = _model_file(old_home / "models", "retrained.keras", b"retrained weights")
    outside = _model_file(tmp_path / "elsewhere", "by-hand.keras", b"trained by hand")
    with sessions() as s:
        inside = registry.register_model(s, retrained, home=old_home)
        other = registry.register_model(s, outside, home=old_home)
        assert inside.path == "models/retrained.keras" and other.path == str(outside.resolve())
        shutil.move(old_home, new_home)  # the installation restored or moved elsewhere
        assert inside.model_file(new_home) == new_home / "models" / "retrained.keras"
        assert registry.verify_model_file(inside, new_home) is None
        assert registry.model_row(inside, new_home)["path"] == str(new_home / "models" / "retrained.keras")
        assert "missing" in registry.verify_model_file(inside, old_home)
        assert registry.verify_model_file(other, new_home) is None  # a file outside the home stays where it is


@pytest.mark.parametrize(
    ("metric", "challenger", "champion", "margin", "promoted"),
    [
        ("csi_1_mean", 0.50, 0.40, 0.01, True),
        ("csi_1_mean", 0.405, 0.40, 0.01, False),  # better, but not by the margin
        ("csi_1_mean", 0.30, 0.40, 0.0, False),
        ("mae_mm_h_mean", 0.80, 0.90, 0.05, True),  # lower is better
        ("mae_mm_h_mean", 0.95, 0.90, 0.0, False),
        ("csi_1_mean", math.nan, 0.40, 0.0, False),
    ],
)
def test_decide(metric, challenger, champion, margin, promoted):
    verdict, reason = decide({metric: challenger}, {metric: champion}, metric, margin)
    assert verdict is promoted
    assert metric in reason and ("promoted" if promoted else "kept the champion") in reason


def test_decide_needs_enough_rain_in_the_validation_scans():
    better = ({"csi_1_mean": 0.6}, {"csi_1_mean": 0.4}, "csi_1_mean", 0.01)
    verdict, reason = decide(*better, validation_wet_pixels={"0.1": 90000, "1": 500}, min_wet_pixels=10000)
    assert verdict is False and "too little rain to judge: 500 observed pixels >= 1 mm/h" in reason
    assert decide(*better, validation_wet_pixels={"0.1": 90000, "1": 20000}, min_wet_pixels=10000)[0] is True
    # MAE is judged where it rains at all (>= 0.1 mm/h)
    mae = ({"mae_mm_h_mean": 0.5}, {"mae_mm_h_mean": 0.9}, "mae_mm_h_mean", 0.0)
    assert decide(*mae, validation_wet_pixels={"0.1": 20000, "1": 0}, min_wet_pixels=10000)[0] is True


def test_decide_rejects_unknown_metric():
    with pytest.raises(ValueError, match="unknown promotion metric"):
        decide({"x": 1}, {"x": 0}, "x", 0)


def test_split_by_time_has_no_leak():
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    frames = [SimpleNamespace(scan_time=t0 + timedelta(minutes=10 * k)) for k in range(100)]
    train, validation, split = split_by_time(frames, 0.25, timedelta(days=2))
    assert max(f.scan_time for f in train) < split
    assert min(f.scan_time for f in validation) == split - timedelta(minutes=30)  # inputs of the first window
    assert len(train) == 75 or abs(len(train) - 75) <= 1
    with pytest.raises(ValueError, match="too few"):
        split_by_time(frames[:10], 0.25, timedelta(days=2))
