"""The command line with a user's mistakes: a short message on stderr naming the problem and the
way out, exit code 2 for usage errors and 1 for failures, never a traceback; read-only commands
never create a home."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nowcast_app.cli import app
from nowcast_app.errors import run


def nowcast(capsys, *args: str) -> tuple[int, list[str]]:
    code = run(app, list(args))
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.strip()]


def _assert_short(lines: list[str]) -> None:
    assert 1 <= len(lines) <= 3, lines
    assert not any("Traceback" in line for line in lines), lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, code, words", [
    (("forecasts", "--dam", "nope"), 2, ["unknown dam 'nope'", "dam-1"]),
    (("alerts", "--dam", "nope"), 2, ["unknown dam 'nope'", "dam-1"]),
    (("forecasts", "--method", "nope"), 2, ["unknown method 'nope'", "pysteps"]),
    (("forecasts", "--since", "2020-10-31T12:00Z", "--until", "2020-10-31T11:00Z"), 2, ["before --since"]),
    (("forecasts", "--since", "yesterday"), 2, ["not an ISO 8601 time"]),
    (("skill", "--until", "2020-01-01", "--since", "2020-02-01"), 2, ["before --since"]),
    (("export", "--out", "/nonexistent-folder/f.npz"), 2, ["does not exist"]),
    (("frobnicate",), 2, ["No such command"]),
    (("forecasts", "--dmn", "dam-1"), 2, ["No such option"]),
    (("skill", "--probabilistic", "--plot", "r.txt"), 2, ["not a picture file name", ".png"]),
    (("skill", "--plot", "skill"), 2, ["not a picture file name"]),
    (("alerts", "--format", "yaml"), 2, ["'yaml' is not one of 'table', 'json', 'csv'"]),
    (("prune", "--keep-days", "1"), 2, ["--keep-days 1: must be more than 73 h (3.042 days)", "NOWCAST_MAX_SCAN_AGE_H"]),
    (("prune", "--keep-days", "0"), 2, ["must be more than 73 h", "0 in NOWCAST_KEEP_FORECAST_FILES_DAYS keeps every"]),
    (("prune", "--keep-days", "inf"), 2, ["--keep-days inf: must be a number of days up to 36500"]),
    (("db", "downgrade", "0042"), 2, ["unknown schema revision '0042'", "0009, 0010", "base"]),
])
def test_usage_errors_on_an_installation(installed_home, capsys, args, code, words):
    got, lines = nowcast(capsys, *args)
    assert got == code, lines
    _assert_short(lines)
    for word in words:
        assert word in " ".join(lines)
    assert "Value error" not in " ".join(lines)  # a validator's prefix, not words for a user


def test_valid_filters_that_match_nothing_exit_0(installed_home, capsys):
    for args in (("forecasts", "--dam", "dam-3"), ("forecasts", "--method", "pysteps", "--since", "2020-01-01"),
                 ("frames", "--rejected"), ("skill", "--by", "dam")):
        assert nowcast(capsys, *args)[0] == 0, args


def test_a_plot_of_nothing_is_not_drawn(installed_home, tmp_path, capsys):
    for extra in ((), ("--probabilistic",)):
        plot = tmp_path / "empty.png"
        code, lines = nowcast(capsys, "skill", *extra, "--plot", str(plot))
        said = " ".join(lines)
        assert code == 0 and ("no plot written" in said or "no diagram written" in said), lines
        assert not plot.exists()


def test_ensemble_options_without_probabilistic_are_a_usage_error(in_empty_folder, tmp_path, capsys, shared_radar):
    out = tmp_path / "f.npz"
    code, lines = nowcast(capsys, "predict", str(shared_radar / "knmi-w0"), "--out", str(out), "--members", "5")
    assert code == 2 and "--probabilistic" in " ".join(lines), lines
    _assert_short(lines)
    assert not out.exists()


@pytest.mark.parametrize("command", [
    ("predict", "{missing}", "--out", "{tmp}/f.npz"), ("replay", "{missing}"), ("evaluate", "{missing}"),
    ("train", "{missing}", "--out", "{tmp}/m.keras")])
def test_missing_folders_are_usage_errors(in_empty_folder, tmp_path, capsys, command):
    args = [a.format(missing=tmp_path / "no-such-folder", tmp=tmp_path) for a in command]
    code, lines = nowcast(capsys, *args)
    assert code == 2, lines
    _assert_short(lines)
    assert "no-such-folder" in " ".join(lines) and "does not exist" in " ".join(lines)


def test_a_folder_without_scans_says_so(in_empty_folder, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    code, lines = nowcast(capsys, "predict", str(tmp_path / "nothing"), "--out", str(tmp_path / "f.npz"),
                          "--method", "persistence")
    assert code == 1 and "no scan file" in lines[0], lines
    assert not (tmp_path / "f.npz").exists()


def test_sample_into_a_missing_folder_creates_nothing(in_empty_folder, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "samples"
    code, lines = nowcast(capsys, "sample", str(target), "--scans", "4")
    assert code == 2, lines
    _assert_short(lines)
    assert "does not exist" in lines[0] and not (tmp_path / "no").exists()
    code, lines = nowcast(capsys, "sample", str(tmp_path / "samples"), "--scans", "4")  # a new OUT is fine
    assert code == 0 and len(list((tmp_path / "samples").glob("RDR_*.npz"))) == 4


def test_out_into_a_missing_folder_creates_nothing(in_empty_folder, tmp_path, capsys, shared_radar):
    target = tmp_path / "not" / "there" / "f.npz"
    code, lines = nowcast(capsys, "predict", str(shared_radar / "knmi-w0"), "--out", str(target),
                          "--method", "persistence")
    assert code == 2 and "does not exist" in lines[0], lines
    assert not (tmp_path / "not").exists()


def test_unreachable_postgresql_names_host_and_port(in_empty_folder, monkeypatch, capsys):
    port = _free_port()
    monkeypatch.setenv("NOWCAST_DATABASE_URL", f"postgresql://nowcast@127.0.0.1:{port}/nowcast")
    for args in (("status",), ("db", "upgrade"), ("run", "--once", "--no-web")):
        code, lines = nowcast(capsys, *args)
        assert code == 1, lines
        _assert_short(lines)
        assert f"127.0.0.1:{port}" in lines[0] and "cannot reach the database" in lines[0]


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x/y"])
def test_malformed_database_url(in_empty_folder, monkeypatch, capsys, url):
    monkeypatch.setenv("NOWCAST_DATABASE_URL", url)
    code, lines = nowcast(capsys, "db", "upgrade")
    assert code == 2, lines
    _assert_short(lines)
    assert "database URL" in lines[0] and "NOWCAST_DATABASE_URL" in lines[-1]


@pytest.mark.parametrize("variable, value, words", [
    ("NOWCAST_METHOD", "foo", ["setting method (NOWCAST_METHOD)", "unknown forecast method 'foo'", "pysteps"]),
    ("NOWCAST_BASELINES", '["persistence", "foo"]', ["setting baselines (NOWCAST_BASELINES)", "'foo'"]),
    ("NOWCAST_REFERENCE_ENSEMBLE", "stepz", ["setting reference_ensemble", "unknown ensemble 'stepz'", "steps"]),
    ("NOWCAST_RETRAIN_CRON", "bad cron", ["setting retrain_cron (NOWCAST_RETRAIN_CRON)", "five fields"]),
    ("NOWCAST_WEBHOOKS", "notjson", ["setting webhooks (NOWCAST_WEBHOOKS)", "not valid JSON"]),
    ("NOWCAST_LOG_FORMAT", "xml", ["setting log_format (NOWCAST_LOG_FORMAT)", "'text' or 'json'"]),
    ("NOWCAST_KEEP_FORECAST_FILES_DAYS", "2", ["setting keep_forecast_files_days (NOWCAST_KEEP_FORECAST_FILES_DAYS)",
                                               "0 (keep every file) or more than 73 h"]),
    ("NOWCAST_KEEP_FORECAST_FILES_DAYS", "inf", ["setting keep_forecast_files_days", "finite number"]),
])
@pytest.mark.parametrize("command", [("config",), ("status",), ("run", "--once")])
def test_a_bad_setting_is_refused_by_every_command_before_any_work(in_empty_folder, monkeypatch, capsys, variable,
                                                                    value, words, command):
    monkeypatch.setenv(variable, value)
    code, lines = nowcast(capsys, *command)
    assert code == 2, lines
    _assert_short(lines)
    assert all(w in lines[0] for w in words), lines
    assert not (in_empty_folder / "var").exists()  # nothing was created


def test_a_bad_setting_in_the_toml_file_is_named_there(in_empty_folder, monkeypatch, capsys):
    toml = in_empty_folder / "settings.toml"
    toml.write_text('keep_forecast_files_days = 2\n')
    monkeypatch.setenv("NOWCAST_CONFIG", str(toml))
    code, lines = nowcast(capsys, "status")
    assert code == 2, lines
    assert f"setting keep_forecast_files_days (keep_forecast_files_days in {toml})" in lines[0], lines


def test_an_older_schema_is_never_migrated_by_a_read_only_command(installed_home, monkeypatch, capsys):
    """status and serve (which only reads) refuse it with the way out; the database stays as it was."""
    from nowcast_core.config import load_settings
    from nowcast_core.db import downgrade
    from nowcast_core.db.migrate import current_revision

    url = load_settings().database_url
    downgrade(url, "0009")

    def never(*args, **kwargs):
        raise AssertionError("the server must not start on an older schema")

    monkeypatch.setattr("nowcast_app.web.server.serve", never)
    for command in (("status",), ("serve", "--port", str(_free_port()))):
        code, lines = nowcast(capsys, *command)
        assert code == 1, lines
        _assert_short(lines)
        assert "schema is at 0009, this version needs" in lines[0] and "nowcast db upgrade" in lines[-1], lines
    assert current_revision(url) == "0009"
    code, lines = nowcast(capsys, "db", "upgrade")
    assert code == 0 and lines[-1] == "database at 0010 (upgraded from 0009)", lines


def test_a_home_that_cannot_be_created(in_empty_folder, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NOWCAST_HOME", str(blocker / "home"))
    code, lines = nowcast(capsys, "db", "upgrade")
    assert code == 1, lines
    _assert_short(lines)
    assert str(blocker / "home") in lines[0] and "NOWCAST_HOME" in lines[-1]


@pytest.mark.parametrize("command", [("status",), ("forecasts",), ("frames",), ("skill",), ("models", "list"),
                                     ("export", "--out", "f.npz")])
def test_read_only_commands_never_create_a_home(in_empty_folder, capsys, command):
    code, lines = nowcast(capsys, *command)
    assert code == 1, lines
    _assert_short(lines)
    assert "no nowcast installation" in lines[0] and "NOWCAST_HOME" in lines[-1]
    assert list(in_empty_folder.iterdir()) == []


def test_config_shows_the_resolved_method_and_model(in_empty_folder, capsys):
    import json

    assert run(app, ["config", "--format", "json"]) == 0
    values = json.loads(capsys.readouterr().out)
    assert values["resolved_method"] == "rainnet"
    assert Path(values["resolved_model"]).name == "rainnet.keras"
    assert list(in_empty_folder.iterdir()) == []


def test_an_unexpected_error_is_one_line_unless_verbose(installed_home, monkeypatch, capsys):
    import nowcast_core.db.queries as queries

    def broken(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(queries, "frame_rows", broken)
    code, lines = nowcast(capsys, "frames")
    assert code == 1 and "RuntimeError: disk on fire" in lines[0] and "--verbose" in lines[1], lines
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(app, ["--verbose", "frames"])


@pytest.mark.parametrize("extra, words", [
    (("--recipe", "nope"), ["unknown recipe 'nope'", "shipped"]),
    (("--probability-matching", "1.5"), ["--probability-matching", "less than or equal to 1"]),
    (("--max-samples-per-folder", "0"), ["--max-samples-per-folder"]),
])
def test_train_settings_are_checked_before_any_work(in_empty_folder, tmp_path, capsys, shared_radar, extra, words):
    out = tmp_path / "m.keras"
    code, lines = nowcast(capsys, "train", str(shared_radar / "fmi-20160928-w0"), "--out", str(out), *extra)
    assert code == 2, lines
    _assert_short(lines)
    for word in words:
        assert word in " ".join(lines)
    assert not out.exists()


def test_serve_on_a_port_in_use_is_one_line(installed_home, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, lines = nowcast(capsys, "serve", "--port", str(port))
    assert code == 1, lines
    _assert_short(lines)
    assert f"could not listen on 127.0.0.1:{port}: Address already in use" in lines[0] and "--port" in lines[0]


@pytest.mark.parametrize(("port", "bound"), [("99999", "less than or equal to 65535"), ("0", "greater than or equal to 1"),
                                             ("-5", "greater than or equal to 1")])
def test_serve_on_a_port_that_cannot_exist_is_a_usage_error(installed_home, capsys, port, bound):
    code, lines = nowcast(capsys, "serve", "--port", port)
    assert code == 2, lines
    _assert_short(lines)
    assert "Invalid value for '--port'" in lines[0] and bound in lines[0]
