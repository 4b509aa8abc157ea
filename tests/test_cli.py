"""The ``nowcast`` command line: one real ``run --once`` (Prefect flow, embedded server) as a
subprocess on SQLite and on PostgreSQL, then the query commands; and parse errors.

Only ``run --once`` runs as a subprocess (each takes ~15 s for Prefect's temporary server);
the query commands run in-process through Typer's CliRunner, with the same environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import helpers_frames as hf
import numpy as np
import pytest
from typer.testing import CliRunner

from nowcast_app.cli import app
from nowcast_core.io import pixel_to_rain_rate, read_frame
from nowcast_core.io.fields import quantize

ROW_KEYS = {"issue_time", "dam", "lead_minutes", "valid_time", "mean_mm_h", "max_mm_h", "depth_mm", "method",
            "model_version"}


def _nowcast_exe() -> list[str]:
    beside = Path(sys.executable).parent / "nowcast"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("nowcast")
    return [found] if found else [sys.executable, "-c", "from nowcast_app.cli import main; main()"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"NOWCAST_HOME": str(home), "NOWCAST_SETTLE_SECONDS": "0", "NOWCAST_METHOD": "persistence",
            "NOWCAST_BASELINES": "[]", "NOWCAST_REFERENCE_ENSEMBLE": "", **extra}


def run_once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    full.update(env)
    proc = subprocess.run([*_nowcast_exe(), "run", "--once"], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"run --once failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def cli(env: dict[str, str], *args: str):
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, f"nowcast {' '.join(args)} -> {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def cli_json(env: dict[str, str], *args: str):
    return json.loads(cli(env, *args, "--format", "json").stdout)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _check_forecast_rows(rows: list[dict], issue_times: list[str]) -> None:
    assert isinstance(rows, list) and len(rows) == 42 * len(issue_times)
    assert sorted({r["issue_time"] for r in rows}) == issue_times
    for r in rows:
        assert ROW_KEYS <= set(r)
        issue = datetime.fromisoformat(r["issue_time"].replace("Z", "+00:00"))
        assert r["valid_time"] == _iso(issue + timedelta(minutes=r["lead_minutes"]))
        assert r["method"] == "persistence" and r["model_version"] == "1"
        assert 0 <= r["mean_mm_h"] <= r["max_mm_h"]
        assert r["depth_mm"] == pytest.approx(r["mean_mm_h"] * r["lead_minutes"] / 60, abs=2e-3)
    assert {r["lead_minutes"] for r in rows} == {10, 20, 30, 40, 50, 60}
    assert len({r["dam"] for r in rows}) == 7


def _check_probabilities(rows: list[dict]) -> None:
    """Every production forecast row carries the ensemble's keys, in order and in range."""
    keys = ("accum_mm", "accum_mm_p10", "accum_mm_p50", "accum_mm_p90", "prob_accum_ge", "prob_rate_ge")
    by_run_dam: dict[tuple, list[dict]] = {}
    for r in rows:
        assert all(r[k] is not None for k in keys), r
        assert r["accum_mm_p10"] <= r["accum_mm_p50"] <= r["accum_mm_p90"]
        for probs in (r["prob_accum_ge"], r["prob_rate_ge"]):
            thresholds = [float(k) for k in probs]
            p = list(probs.values())
            assert thresholds == sorted(thresholds) and all(0 <= v <= 1 for v in p) and p == sorted(p, reverse=True)
        assert list(r["prob_accum_ge"]) == ["5", "10", "20", "50"] and list(r["prob_rate_ge"]) == ["1", "5", "10"]
        by_run_dam.setdefault((r["issue_time"], r["dam"]), []).append(r)
    for series in by_run_dam.values():
        series.sort(key=lambda r: r["lead_minutes"])
        for k in ("accum_mm", "accum_mm_p10", "accum_mm_p50", "accum_mm_p90"):
            values = [r[k] for r in series]
            assert values == sorted(values), (k, values)  # accumulations grow with lead


def test_run_once_then_query_sqlite(tmp_path, shared_radar, monkeypatch):
    home = tmp_path / "home"
    env = _env(home, NOWCAST_REFERENCE_ENSEMBLE="steps", NOWCAST_REFERENCE_MAX_PER_CYCLE="1",
               NOWCAST_REFERENCE_MEMBERS="4")
    files = hf.event_files(shared_radar, 20, 6)  # a wet part of the event
    times = hf.deliver(files, home / "inbox")
    hf.write_file(home / "inbox", "notes.txt", b"not a scan")
    hf.write_file(home / "inbox", hf.frame_file_name(hf.FAULT_DAY), hf.npz_bytes(frame=np.zeros((5, 5), np.uint8)))
    issue_times = [_iso(t) for t in times[3:]]

    run_once(env, tmp_path)

    latest = cli_json(env, "forecasts")
    _check_forecast_rows(latest, issue_times[-1:])
    every = cli_json(env, "forecasts", "--since", issue_times[0])
    _check_forecast_rows(every, issue_times)
    _check_probabilities(every)
    assert any(r["accum_mm_p90"] > 0 for r in every)  # a wet part of the event
    csv_text = cli(env, "forecasts", "--since", issue_times[0], "--format", "csv").stdout
    header = csv_text.splitlines()[0].split(",")
    assert {"accum_mm_p50", "accum_mm_p90", "prob_accum_ge_20", "prob_rate_ge_5"} <= set(header)
    one_dam = cli_json(env, "forecasts", "--dam", "dam-3", "--issue-time", issue_times[1])
    assert {(r["dam"], r["issue_time"]) for r in one_dam} == {("dam-3", issue_times[1])} and len(one_dam) == 6

    levels = cli_json(env, "alerts")  # each dam's level from the newest run, with its reason
    assert [r["dam"] for r in levels] == [f"dam-{k}" for k in range(1, 8)]
    assert {r["issue_time"] for r in levels} == {issue_times[-1]} and all(r["level"] and r["reason"] for r in levels)
    assert all(0 <= r["probability"] <= 1 for r in levels)  # the ensemble's, as a number too
    assert [r["dam"] for r in cli_json(env, "alerts", "--dam", "dam-3")] == ["dam-3"]

    rejected = cli_json(env, "frames", "--rejected")
    assert {(r["file"], r["reason_kind"]) for r in rejected} == {("notes.txt", "bad_name"),
                                                                  (hf.frame_file_name(hf.FAULT_DAY), "wrong_shape")}
    assert all(r["reason"] for r in rejected)
    assert [r["scan_time"] for r in cli_json(env, "frames")] == [_iso(t) for t in times]

    out = tmp_path / "export" / "f.npz"
    out.parent.mkdir()  # --out into a missing folder is an error (tests/test_cli_errors.py)
    cli(env, "export", "--out", str(out), "--probabilistic")
    other = cli(env, "export", "--out", str(tmp_path / "export" / "p.npz"), "--probabilistic", "--method", "pysteps")
    assert "not pysteps's" in " ".join(other.output.split())  # says whose probabilities they are
    with np.load(out, allow_pickle=False) as npz:
        exported_times = [str(s) for s in npz["issue_times"]]
        rain = npz["rain_rate_mm_h"]
        assert list(npz["thresholds_mm_h"]) == [0.1, 1.0, 5.0, 10.0]
        exceedance = npz["exceedance_probability"]
        assert list(npz["ensemble_method"]) == ["persistence-ensemble"] * 3  # which ensemble the probabilities are
    assert exceedance.dtype == np.float32 and exceedance.shape == (3, 6, 4, 120, 120)
    assert exceedance.min() >= 0 and exceedance.max() <= 1 and (np.diff(exceedance, axis=2) <= 0).all()
    skill = cli_json(env, "skill", "--probabilistic")
    assert {r["method"] for r in skill} == {"persistence-ensemble"}  # the reference's issue time has no observation
    assert all(0 <= r["brier"] <= 1 for r in skill)
    legend = {}  # a diagram of a handful of runs says it is no verdict
    monkeypatch.setattr("nowcast_core.plots.plot_reliability", lambda counts, path, labels=None, **kw: legend.update(labels))
    cli(env, "skill", "--probabilistic", "--plot", str(tmp_path / "rel.png"))
    assert legend and all(label.endswith("runs (too few to judge)") for label in legend.values()), legend
    assert exported_times == issue_times
    assert all(datetime.fromisoformat(s.replace("Z", "+00:00")).tzinfo is not None for s in exported_times)
    assert rain.dtype == np.float32 and rain.shape == (3, 6, 120, 120)
    for k, f in enumerate(files[3:]):  # persistence: the issue scan's rain rate at every lead
        expected = quantize(pixel_to_rain_rate(read_frame(f).frame))
        np.testing.assert_allclose(rain[k], np.repeat(expected[None], 6, 0), atol=1e-6)

    status = cli_json(env, "status")
    assert status["last_scan"].startswith(_iso(times[-1]).rstrip("Z"))
    assert status["last_forecast_issue_time"].startswith(issue_times[-1].rstrip("Z"))
    assert (status["frames"], status["rejected_files"], status["forecast_runs"], status["production_runs"]) == (6, 2, 3, 3)
    assert status["method_in_use"] == "persistence" and status["fallback_reason"] is None
    assert status["inbox_waiting"] == 0 and status["forecast_lag_minutes"] == 0.0

    # a second cycle finds nothing new
    run_once(env, tmp_path)
    assert cli_json(env, "forecasts", "--since", issue_times[0]) == every
    again = cli_json(env, "status")
    assert {k: again[k] for k in ("frames", "rejected_files", "forecast_runs", "production_runs")} == \
        {"frames": 6, "rejected_files": 2, "forecast_runs": 3, "production_runs": 3}


@pytest.mark.postgres
def test_run_once_on_postgres(tmp_path, shared_radar, pg_url):
    home = tmp_path / "home"
    env = _env(home, NOWCAST_DATABASE_URL=pg_url)
    times = hf.deliver(hf.event_files(shared_radar, 20, 5), home / "inbox")
    hf.write_file(home / "inbox", "notes.txt", b"not a scan")

    run_once(env, tmp_path)

    assert not (home / "nowcast.db").exists(), "the PostgreSQL URL was not used"
    every = cli_json(env, "forecasts", "--since", _iso(times[0]))
    _check_forecast_rows(every, [_iso(t) for t in times[3:]])
    assert [(r["file"], r["reason_kind"]) for r in cli_json(env, "frames", "--rejected")] == [("notes.txt", "bad_name")]
    status = cli_json(env, "status")
    assert (status["frames"], status["rejected_files"], status["production_runs"]) == (5, 1, 2)


# --- parse errors -------------------------------------------------------------------------


@pytest.mark.parametrize("args,bad", [
    (["forecasts", "--since", "yesterday"], "yesterday"),
    (["forecasts", "--until", "2020-13-01"], "2020-13-01"),
    (["forecasts", "--issue-time", "noon"], "noon"),
    (["export", "--out", "{tmp}/x.npz", "--since", "2020-02-30T00:00Z"], "2020-02-30T00:00Z"),
    (["skill", "--since", "last week"], "last week"),
    (["sample", "{tmp}/out", "--start", "soon"], "soon"),
])
def test_bad_time_is_a_clear_error(tmp_path, args, bad):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, args, env={"NOWCAST_HOME": str(tmp_path / "home")})
    assert result.exit_code == 2, result.output
    assert "not an ISO 8601 time" in result.output and repr(bad) in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "out").exists()


def test_bad_format_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["forecasts", "--format", "xml"], env={"NOWCAST_HOME": str(tmp_path / "h")})
    assert result.exit_code == 2 and "xml" in result.output


def test_bad_since_from_the_real_entry_point(tmp_path):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    full["NOWCAST_HOME"] = str(tmp_path / "home")
    proc = subprocess.run([*_nowcast_exe(), "forecasts", "--since", "yesterday"], env=full, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "not an ISO 8601 time" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout.strip() == ""
