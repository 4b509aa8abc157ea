"""A settings mistake is said, never silently left at the default (operator trial: a TOML typo, a missing
NOWCAST_CONFIG file and a mistyped variable each left the default in force without a word)."""

from __future__ import annotations

import pytest
from test_cli_errors import _assert_short, nowcast


@pytest.mark.parametrize("content, words", [
    ("poll_intervall_s = 5\n", ["'poll_intervall_s' is not a setting", "did you mean poll_interval_s?"]),
    ("poll_interval_s = \n", ["is not valid TOML", "line 1"]),
    (None, ["NOWCAST_CONFIG names", "which is not a file"]),
])
def test_a_bad_settings_file_is_a_usage_error_naming_it(in_empty_folder, tmp_path, monkeypatch, capsys,
                                                        content, words):
    path = tmp_path / "nowcast.toml"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("NOWCAST_CONFIG", str(path))
    monkeypatch.setenv("NOWCAST_HOME", str(tmp_path / "home"))
    code, lines = nowcast(capsys, "config")
    assert code == 2, lines
    _assert_short(lines)
    assert str(path) in lines[0] and all(w in lines[0] for w in words), lines
    assert not (tmp_path / "home").exists()


def test_a_settings_file_in_the_home_is_checked_too(in_empty_folder, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "nowcast.toml").write_text("poll_interval_s = 5\nmetod = 'pysteps'\n")
    monkeypatch.setenv("NOWCAST_HOME", str(home))
    code, lines = nowcast(capsys, "config")
    assert code == 2 and "'metod' is not a setting; did you mean method?" in lines[0], lines
    (home / "nowcast.toml").write_text("poll_interval_s = 5\n")
    code, lines = nowcast(capsys, "config", "--format", "json")
    assert code == 0, lines


def test_a_mistyped_variable_is_warned_about_once_and_the_command_goes_on(in_empty_folder, tmp_path,
                                                                            monkeypatch, capsys):
    from nowcast_core.config import unknown_variables

    monkeypatch.setenv("NOWCAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NOWCAST_POLL_INTERVALS", "5")
    monkeypatch.setenv("NOWCAST_XLA", "0")  # read elsewhere, not a setting: no warning
    monkeypatch.setattr("nowcast_app.cli._WARNED", set())
    assert unknown_variables() == ["NOWCAST_POLL_INTERVALS is not a setting and is ignored; "
                                   "did you mean NOWCAST_POLL_INTERVAL_S?"]
    code, lines = nowcast(capsys, "config", "--format", "json")
    assert code == 0, lines
    assert lines == ["nowcast: warning: NOWCAST_POLL_INTERVALS is not a setting and is ignored; "
                     "did you mean NOWCAST_POLL_INTERVAL_S?"]
