"""Operational precipitation nowcasting for hydro-power dams.

Packages by concern:

- ``frames``: the radar feed's file contract (reading, validating, pixel scale).
- ``forecasters``: persistence, pysteps optical flow and RainNet behind one interface.
- ``rainnet``: the RainNet model, its preprocessing and its training.
- ``dams``: catchments and their rainfall statistics.
- ``db``: the database schema and its repository functions.
- ``ingest`` / ``cycle``: the inbox and the forecast cycle's domain logic.
"""

__version__ = "0.1.0"

import os as _os
from pathlib import Path as _Path

# pysteps prints where its configuration file is on import: give it ours, which is silent.
_os.environ.setdefault("PYSTEPSRC", str(_Path(__file__).resolve().parent / "data" / "pystepsrc"))
