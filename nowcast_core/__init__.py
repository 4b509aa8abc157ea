"""Operational precipitation nowcasting for hydro-power dams: the library.

Packages by concern (the application, ``nowcast_app``, and the Prefect flows, ``flows``, sit above):

- ``contract``, ``times``: the shared grid, scan interval and leads; how times are written.
- ``io``: the feed's scan files, forecast windows, stored forecast fields, crash-safe writes.
- ``inbox``: validating, archiving and quarantining what arrives; replaying scans into it.
- ``extrapolation``: persistence and pysteps optical-flow extrapolation.
- ``forecasters``: persistence, pysteps and RainNet behind one interface (``get_method``).
- ``rainnet``: the RainNet network, its build configuration, preprocessing and training.
- ``verification``: scores, stored verification and skill, offline evaluation.
- ``models``: the model registry, the production choice and its fallback, retraining.
- ``dams``: catchments and their rainfall statistics.
- ``db``: the schema, engine, migrations and queries.
- ``cycle``: the forecast cycle's steps and the service that runs them.
"""

__version__ = "0.1.0"

import os as _os
from pathlib import Path as _Path

# pysteps prints where its configuration file is on import: give it ours, which is silent.
_os.environ.setdefault("PYSTEPSRC", str(_Path(__file__).resolve().parent / "data" / "pystepsrc"))
