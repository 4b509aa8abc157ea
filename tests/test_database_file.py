"""A SQLite database file is created only by a migration, and a running process notices when its file is
moved away, deleted or replaced (operator trial: a request of the web page made a new empty database while
the daemon wrote on into the moved one)."""

from __future__ import annotations

import os
import shutil

import helpers_frames as hf
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from test_cli_errors import _assert_short, _free_port, nowcast

from nowcast_core.cycle.locks import file_lock
from nowcast_core.cycle.service import DatabaseFileGone
from nowcast_core.db.engine import make_engine


def test_an_engine_never_creates_a_missing_sqlite_file(tmp_path):
    db = tmp_path / "nowcast.db"
    engine = make_engine(f"sqlite:///{db}")
    with pytest.raises(OperationalError, match="unable to open database file"):
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    assert not db.exists()


def test_the_cycle_refuses_a_database_file_moved_away_deleted_or_replaced(make_sqlite_service, tmp_path):
    svc = make_sqlite_service()
    db = tmp_path / "nowcast.db"
    assert db.is_file()
    svc.check_database_file()
    db.rename(tmp_path / "away.db")
    with pytest.raises(DatabaseFileGone, match="is gone"):
        svc.check_database_file()
    with pytest.raises(OperationalError):  # a new connection does not make an empty one in its place
        with make_engine(svc.settings.database_url).connect() as conn:
            conn.execute(text("select 1"))
    assert not db.exists()
    (tmp_path / "away.db").rename(db)  # put back: the same file, the cycle goes on
    svc.check_database_file()
    shutil.copy(db, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", db)  # e.g. a backup restored under the running daemon
    with pytest.raises(DatabaseFileGone, match="replaced"):
        svc.check_database_file()


def test_serve_on_a_home_without_a_database_is_an_error_and_creates_nothing(in_empty_folder, tmp_path,
                                                                             monkeypatch, capsys):
    home = tmp_path / "typo-home"
    monkeypatch.setenv("NOWCAST_HOME", str(home))
    code, lines = nowcast(capsys, "serve", "--port", str(_free_port()))
    assert code == 1, lines
    _assert_short(lines)
    assert "no nowcast installation" in lines[0] and "nowcast run" in lines[-1]
    assert not home.exists()


def test_a_downgrade_needs_yes_and_a_stopped_daemon(installed_home, capsys):
    code, lines = nowcast(capsys, "db", "downgrade", "base")
    assert code == 2, lines
    _assert_short(lines)
    assert "drops the data" in lines[0] and "--yes" in lines[-1]
    with file_lock(installed_home / "daemon.lock"):  # as the running daemon holds it
        code, lines = nowcast(capsys, "db", "downgrade", "base", "--yes")
    assert code == 1, lines
    _assert_short(lines)
    assert "daemon is running" in lines[0] and "stop it first" in lines[-1]
    code, lines = nowcast(capsys, "status")
    assert code == 0, lines  # nothing was dropped
    code, lines = nowcast(capsys, "db", "downgrade", "0009", "--yes")
    assert code == 0 and lines[-1] == "database at 0009 (downgraded from 0010)", lines


def test_a_home_whose_database_is_gone_says_so_and_how_to_get_it_back(installed_home, capsys, shared_radar):
    day = installed_home / "archive" / "2017" / "01" / "31"
    day.mkdir(parents=True)
    for f in hf.event_files(shared_radar, n=2):
        shutil.copy(f, day / f.name)  # what the daemon archived
    (installed_home / "nowcast.db").rename(installed_home / "away.db")
    code, lines = nowcast(capsys, "status")
    assert code == 1, lines
    _assert_short(lines)
    assert "nowcast.db is missing" in lines[0] and "holds archived scans" in lines[0]
    assert "restore it from a backup" in lines[-1] and "nowcast recover" in lines[-1]
    assert not (installed_home / "nowcast.db").exists()  # nothing created in its place
