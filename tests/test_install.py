"""``pip install .`` (not editable) gives a working ``nowcast``: the built wheel, installed into a fresh
virtual environment, run from an unrelated folder, forecasts real scans with the bundled model
and migrates its database from the migrations shipped inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """A fresh venv with the project's wheel installed (its dependencies come from this
    environment's site-packages through a .pth file, so nothing is downloaded)."""
    work = tmp_path_factory.mktemp("wheel")
    build = work / "src"
    # Build from a copy of the working tree (tracked and new files, not ignored ones), so no build
    # output lands in the checkout.
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        dest = build / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dest.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dest)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
          str(build)])
    wheel = next((work / "dist").glob("nowcast-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)])
    return venv, wheel


def test_wheel_ships_the_migrations_and_the_model(installed_wheel):
    import zipfile

    _, wheel = installed_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "nowcast_core/db/migrations/env.py" in names
    assert any(n.startswith("nowcast_core/db/migrations/versions/0001") for n in names)
    assert "nowcast_core/data/models/rainnet.keras" in names
    assert "nowcast_core/data/ensemble_calibration.json" in names  # the production ensemble's calibration
    assert "nowcast_app/cli.py" in names and "flows/forecast_cycle.py" in names


def test_installed_nowcast_runs_a_cycle_from_an_unrelated_folder(installed_wheel, tmp_path, shared_radar):
    venv, _ = installed_wheel
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = tmp_path / "home"
    scans = sorted((shared_radar / "knmi-w0").glob("RDR_*.npz"))[:7]
    (home / "inbox").mkdir(parents=True)
    for scan in scans:
        shutil.copy(scan, home / "inbox" / scan.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOWCAST_", "PREFECT_", "PYTHONPATH"))}
    env.update(NOWCAST_HOME=str(home), NOWCAST_SETTLE_SECONDS="0", NOWCAST_BASELINES="[]")
    where = _run([str(venv / "bin" / "python"), "-c", "import nowcast_core, flows, nowcast_app; "
                  "print(nowcast_core.__file__, flows.__file__, nowcast_app.__file__)"], cwd=elsewhere, env=env)
    assert str(ROOT) not in where.stdout and str(venv) in where.stdout, where.stdout
    _run([str(venv / "bin" / "nowcast"), "run", "--once"], cwd=elsewhere, env=env)
    out = _run([str(venv / "bin" / "nowcast"), "forecasts", "--since", "2000-01-01", "--format", "json"],
               cwd=elsewhere, env=env).stdout
    import json

    rows = json.loads(out)
    issue_times = {r["issue_time"] for r in rows}
    assert len(issue_times) == len(scans) - 3  # every scan with its three predecessors was forecast
    assert {r["method"] for r in rows} == {"rainnet"} and len(rows) == len(issue_times) * 7 * 6
    assert list(elsewhere.iterdir()) == []  # nothing written where it ran
