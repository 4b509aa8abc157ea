"""Prefect deployments (``flows/deployments.py``, ``nowcast deploy``) and the deployment smoke test.

The unit tests build the deployment objects offline (no Prefect server). ``test_deploy_smoke``
runs ``scripts/deploy-smoke`` for real: a throwaway PostgreSQL, a Prefect server on it, a process
worker, ``nowcast deploy`` and the 12-scan sample sequence; it is slow (about a minute) and runs
in CI (skipped on a workstation without PostgreSQL server binaries, failed under CI).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

try:  # tests/ as a package or as a plain rootdir (see conftest.py)
    from . import pg
except ImportError:
    import pg

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "scripts" / "deploy-smoke"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from nowcast_core.config import load_settings

    for key in list(os.environ):
        if key.startswith("NOWCAST_"):
            monkeypatch.delenv(key)
    return load_settings(home=tmp_path / "home", poll_interval_s=20,
                         database_url="postgresql://nowcast@db.example:5432/nowcast")


def test_build_deployments_offline(settings, tmp_path):
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.runner.storage import LocalStorage

    from flows.deployments import REPO_DIR, DeployOptions, build_deployments

    environ = {"NOWCAST_POLL_INTERVAL_S": "20", "NOWCAST_INBOX": "relative/inbox", "HOME": "/root"}
    forecast, verification, retrain = build_deployments(
        settings, DeployOptions(verification_interval_s=300, extra_env={"TF_NUM_THREADS": "4"}), environ)

    assert REPO_DIR == REPO
    assert [d.flow_name for d in (forecast, verification, retrain)] == ["forecast-cycle", "verification", "retrain"]
    assert {d.name for d in (forecast, verification, retrain)} == {"nowcast"}
    assert forecast.entrypoint == "flows/forecast_cycle.py:forecast_cycle"
    assert retrain.entrypoint == "flows/retrain.py:retrain"

    # forecast cycle: every poll interval, one at a time, a new run cancelled while one is active
    (sched,) = forecast.schedules
    assert sched.schedule.interval == timedelta(seconds=20)
    (sched,) = verification.schedules
    assert sched.schedule.interval == timedelta(seconds=300)
    for d in (forecast, verification, retrain):
        assert d.concurrency_limit == 1
        assert d.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW

    # retraining: its cron (UTC) on its own pool
    (sched,) = retrain.schedules
    assert sched.schedule.cron == settings.retrain_cron
    assert sched.schedule.timezone == "UTC"
    assert (forecast.work_pool_name, verification.work_pool_name, retrain.work_pool_name) == \
        ("nowcast", "nowcast", "nowcast-training")

    # the code is found in this checkout (no image); the settings travel as job variables
    for d in (forecast, verification, retrain):
        assert isinstance(d.storage, LocalStorage)
        assert d.storage.to_pull_step() == {
            "prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        env = d.job_variables["env"]
        assert env["NOWCAST_HOME"] == str((tmp_path / "home").resolve())
        assert env["NOWCAST_DATABASE_URL"] == "postgresql://nowcast@db.example:5432/nowcast"
        assert env["NOWCAST_INBOX"] == str(Path("relative/inbox").resolve())
        assert env["TF_NUM_THREADS"] == "4"
        assert "HOME" not in env
    assert forecast.job_variables is not retrain.job_variables


def test_worker_env_defaults(settings):
    from flows.deployments import worker_env

    env = worker_env(settings, environ={})
    assert set(env) == {"NOWCAST_HOME", "NOWCAST_DATABASE_URL"}
    assert Path(env["NOWCAST_HOME"]).is_absolute()


def test_source_must_be_a_checkout(settings, tmp_path):
    from flows.deployments import DeployError, DeployOptions, build_deployments

    with pytest.raises(DeployError, match="not a nowcast checkout"):
        build_deployments(settings, DeployOptions(source=tmp_path), environ={})


def _cli_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_"))}
    env.update(NOWCAST_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"),
               NOWCAST_POLL_INTERVAL_S="30", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def test_cli_deploy_dry_run_and_refusal_without_server(tmp_path):
    script = Path(sys.executable).parent / "nowcast"
    nowcast = [str(script)] if script.exists() else [sys.executable, "-m", "nowcast_app.cli"]
    out = subprocess.run([*nowcast, "deploy", "--dry-run", "--format", "json", "--training-pool", "gpu"],
                         cwd=REPO, env=_cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["deployment"]: r for r in json.loads(out.stdout)}
    assert rows["forecast-cycle/nowcast"]["schedule"] == "every 30 s"
    assert rows["forecast-cycle/nowcast"]["concurrency"] == "1 CANCEL_NEW"
    assert rows["retrain/nowcast"]["work_pool"] == "gpu"

    # no PREFECT_API_URL: refuse (never deploy into a throw-away ephemeral server)
    out = subprocess.run([*nowcast, "deploy"], cwd=REPO, env=_cli_env(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2
    assert "PREFECT_API_URL" in out.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_deploy_smoke():
    """scripts/deploy-smoke end to end: 30 sample scans -> 27 production runs stored via a Prefect worker,
    and a retraining run on its own pool that leaves a registry entry."""
    try:
        pg.find_bindir()
    except pg.PostgresUnavailable as exc:
        if pg.ci_enabled():
            pytest.fail(f"{exc} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if k != "DEPLOY_SMOKE_KEEP"}
    proc = subprocess.run([str(SMOKE)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, tail
    assert lines, tail
    m = re.fullmatch(r"(\d+) forecast runs stored", lines[-1])
    assert m, tail
    assert int(m.group(1)) >= 1, tail
    assert int(m.group(1)) == 27, tail  # 30 scans, each with t-10, t-20, t-30 from the 4th on
    assert "server holds: 3 deployments, each concurrency 1 CANCEL_NEW, one schedule" in proc.stdout, tail
    assert "no leftover processes" in proc.stdout, tail
    retrain = re.search(r"retrain/nowcast triggered on pool nowcast-training: \['Completed'\]; registry model \d+ "
                        r"rainnet-[0-9a-f]{12}: (promoted|rejected): .*: ok", proc.stdout)
    assert retrain, tail
