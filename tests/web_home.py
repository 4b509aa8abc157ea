"""A home filled by a real cycle on real scans, shared by the web tests (session scope).

20 consecutive scans of the KNMI event (the wet part), ingested, forecast with pysteps as the
production method (with its perturbed ensemble) and persistence beside it, verified and assessed for alerts: what
``nowcast run --once`` does, in-process (no Prefect server), once per test session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nowcast_core.config import load_settings
from nowcast_core.cycle.service import Service

N_SCANS = 20
FIRST_SCAN = 14


def fill_home(home: Path, radar: Path, **overrides) -> Service:
    # min_free_disk_gb 0: the pages do not depend on how full the test machine's disk is
    settings = load_settings(**{"home": home, "settle_seconds": 0, "method": "pysteps", "baselines": ["persistence"],
                                "min_free_disk_gb": 0,
                                **overrides})
    svc = Service(settings)
    svc.migrate()
    for path in sorted((radar / "knmi-w0").glob("RDR_*.npz"))[FIRST_SCAN:FIRST_SCAN + N_SCANS]:
        shutil.copy(path, settings.inbox / path.name)
    svc.ingest()
    svc.forecast(production=True)
    svc.forecast_ensembles()  # the production ensemble: p50/p90 and probabilities on the forecast rows
    svc.forecast_baselines()
    svc.verify()
    return svc


@pytest.fixture(scope="session")
def web_home(tmp_path_factory, shared_radar):
    """Settings of a filled home (SQLite) to build web applications on."""
    svc = fill_home(tmp_path_factory.mktemp("web") / "home", shared_radar)
    yield svc.settings
    svc.close()
